"""From the tidy table to the figures of merit: means with 95% CIs, MAD ratio, convergence ratio.

MAD ratio r_t = E[d_t] / E[d_1] and the convergence ratio (mean over t in [20, T] of E[d_t], over
E[d_1]) are ratios of means over runs (SPEC section 1). Their CIs use the delta method on the paired
per-run values; the CI of a mean uses Student's t.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from madloop import store
from madloop.config import RunConfig

CONVERGENCE_START = 20


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, standard error and the half-width of the 95% Student-t interval of finite values."""
    v = values[np.isfinite(values)]
    if len(v) < 2:
        return (float(v.mean()) if len(v) else np.nan), np.nan, np.nan
    sem = v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(sem), float(stats.t.ppf(0.975, len(v) - 1) * sem)


def ratio_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """mean(a) / mean(b) over paired runs and the half-width of its 95% delta-method interval."""
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2 or b.mean() == 0:
        return np.nan, np.nan
    r = a.mean() / b.mean()
    var = (a.var(ddof=1) - 2 * r * np.cov(a, b)[0, 1] + r**2 * b.var(ddof=1)) / (len(a) * b.mean() ** 2)
    return float(r), float(1.96 * np.sqrt(max(var, 0.0)))


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, gen): n, mean, sem, ci_low, ci_high, mad_ratio and its CI bounds.

    Generation 0 is the real-data floor; the MAD ratio is relative to generation 1.
    """
    rows = []
    for metric, df in table.groupby("metric", sort=True):
        wide = df.pivot(index="run", columns="gen", values="value")
        first = wide[1].to_numpy() if 1 in wide else None
        for gen in wide.columns:
            v = wide[gen].to_numpy()
            mean, sem, half = mean_ci(v)
            r, r_half = ratio_ci(v, first) if first is not None and gen >= 1 else (np.nan, np.nan)
            rows.append(dict(metric=metric, gen=int(gen), n=int(np.isfinite(v).sum()), mean=mean, sem=sem,
                             ci_low=mean - half, ci_high=mean + half,
                             mad_ratio=r, mad_ratio_low=r - r_half, mad_ratio_high=r + r_half))
    return pd.DataFrame(rows)


def convergence_ratio(table: pd.DataFrame, metric: str, start: int = CONVERGENCE_START) -> tuple[float, float]:
    """Mean over generations t >= start of E[d_t], over E[d_1], with its 95% CI half-width (NaN if T < start)."""
    wide = table[table.metric == metric].pivot(index="run", columns="gen", values="value")
    late = [g for g in wide.columns if g >= start]
    if not late or 1 not in wide:
        return np.nan, np.nan
    return ratio_ci(wide[late].mean(axis=1).to_numpy(), wide[1].to_numpy())


@dataclass
class Result:
    """A run directory opened for analysis: ``table`` is the tidy DataFrame, ``config`` the RunConfig."""

    path: Path
    config: RunConfig
    table: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        return summarize(self.table)

    def convergence_ratio(self, metric: str, start: int = CONVERGENCE_START) -> tuple[float, float]:
        return convergence_ratio(self.table, metric, start)

    def headline(self) -> pd.DataFrame:
        """Per metric: the real-data floor, E[d_1], E[d_T], the MAD ratio r_T and the convergence ratio."""
        s = self.summary()
        rows = []
        for metric, df in s.groupby("metric", sort=False):
            by_gen = df.set_index("gen")
            last = by_gen.index.max()
            conv, conv_half = self.convergence_ratio(metric)
            rows.append(dict(metric=metric, floor=by_gen["mean"].get(0, np.nan), first=by_gen["mean"].get(1, np.nan),
                             last_gen=int(last), last=by_gen.loc[last, "mean"],
                             mad_ratio=by_gen.loc[last, "mad_ratio"], mad_ratio_ci=by_gen.loc[last, "mad_ratio"] - by_gen.loc[last, "mad_ratio_low"],
                             convergence_ratio=conv, convergence_ratio_ci=conv_half))
        return pd.DataFrame(rows)


def load(path: str | Path) -> Result:
    """Reopen a run directory (finished or not)."""
    path = Path(path)
    meta = store.read_meta(path)
    return Result(path, RunConfig.from_dict(meta["config"]), store.read_table(path))
