"""What the studies share: sweeping points in a scratch folder, tables, and drawing mean curves with 95% bands.

Studies keep the *summary* of their runs (per point, metric and generation: mean, standard error, 95% CI,
MAD ratio; see ``madloop.results``), not the per-run rows: that is what their figures show, and it stays
small enough to commit. The sweep's run directories live in a scratch folder that is removed afterwards.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import madloop  # noqa: E402
from madloop.plots import METRIC_LABELS  # noqa: E402
from madloop.sweep import SweepResult  # noqa: E402

LABELS = {**METRIC_LABELS, "precision": "precision (k-NN, k = 3)", "recall": "recall (k-NN, k = 3)",
          "true_w2": "$W_2(G^t, p_r)$, closed form", "true_mean_err": r"$\|\mu_t - \mu\|$"}
LOOP_LABELS = {"fully_synthetic": "fully synthetic loop", "augmentation": "synthetic augmentation loop",
               "fresh": "fresh data loop"}


def sweep(axes: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]], jobs: int, **settings) -> SweepResult:
    """``madloop.sweep`` of ``axes`` (a grid, or a list of points) on top of ``settings``, in a scratch folder that
    is removed afterwards; the Results stay in memory (their paths are gone).

    The points run ``jobs`` at a time, one worker each: for many small runs that is where the work is (each of
    a run's chunks costs a store write per generation).
    """
    with tempfile.TemporaryDirectory(prefix="madloop-study-") as tmp:
        return madloop.sweep(axes, out=tmp, point_jobs=jobs, **settings)


def columns_first(table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The table with the columns ``names`` (the settings that tell its rows apart) in front."""
    return table[[*names, *(c for c in table if c not in names)]]


def write_table(table: pd.DataFrame, out: Path, name: str) -> Path:
    path = out / f"{name}.csv"
    table.to_csv(path, index=False, float_format="%.6g")
    return path


def save(fig, out: Path, name: str) -> list[Path]:
    """The figure as PNG and PDF in ``out``."""
    paths = [out / f"{name}.{ext}" for ext in ("png", "pdf")]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def curves(ax, summary: pd.DataFrame, hue: str, label: Callable[[Any], str] = str, value: str = "mean") -> None:
    """Mean over runs (``value="mean"``) or MAD ratio (``"mad_ratio"``) vs generation with its 95% band, one
    line per value of ``hue`` (one metric's rows).

    The real-data floor of the mean (generation 0, where the metric has one) is a dotted line of its colour.
    """
    low, high = ("ci_low", "ci_high") if value == "mean" else (f"{value}_low", f"{value}_high")
    for i, (key, df) in enumerate(summary.groupby(hue, sort=False)):
        color, gens = f"C{i}", df[df.gen >= 1].sort_values("gen")
        ax.plot(gens.gen, gens[value], color=color, label=label(key))
        ax.fill_between(gens.gen, gens[low], gens[high], color=color, alpha=0.25, linewidth=0)
        zero = df[df.gen == 0]
        if value == "mean" and len(zero):
            ax.axhline(float(zero["mean"].iloc[0]), color=color, linestyle=":", linewidth=1.2)
    ax.set_xlabel("generation t")
    ax.grid(alpha=0.3)


def floor_note(summary: pd.DataFrame) -> str:
    """A legend note for the dotted floor lines, where the summary has any."""
    return "  ··· real-data floor (generation 0)" if (summary.gen == 0).any() else ""


def save_with_top_legend(fig, ax, out: Path, name: str) -> list[Path]:
    """One legend (``ax``'s lines) across the top under the title, then PNG and PDF in ``out``."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return save(fig, out, name)
