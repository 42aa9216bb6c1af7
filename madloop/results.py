"""From per-run values to the figures of merit: means with 95% CIs, MAD ratio, convergence ratio.

MAD ratio r_t = E[d_t] / E[d_1] and the convergence ratio (mean over t in [W, T] of E[d_t], over
E[d_1], with the window W = 20 unless given) are ratios of means over runs (SPEC section 1). Both ratios are
reported only for distances to p_r that stay above zero (``no_ratio``): a ratio of log-determinants means nothing,
nor one of KID, whose unbiased estimate falls below zero near its floor.

Intervals, one function each, used by every study: the 95% CI of a mean is Student's t with n - 1 degrees
of freedom (``mean_ci``); the 95% CI of a ratio of means is a percentile bootstrap over runs
(``ratio_interval``: runs resampled with their pairs, a fixed seed, Hesterberg's expansion for few runs).
Neither uses the normal quantile 1.96: with 6 runs that interval is 20-24% too narrow, and the delta method
behind it is broken by the heavy-tailed runs that a blow-up makes.

Every chunk of runs reduces its values to sums (counts, sums, sums of squares and products with
generation 1; written by madloop.measure into moments.parquet) as it goes; means, their CIs and the ratios
themselves come from those sums added over chunks, so they cover every run even when only the first
``store_runs`` runs keep per-run rows (a million runs would not fit in a table). The bootstrap resamples
runs, so a ratio's CI needs every run's rows (runs <= store_runs, the default up to 10,000 runs); without
them, and with at least SUMS_RUNS runs, the interval is the delta method's on the sums with Student t (with
that many runs the ratio's law is close to normal: its bootstrap and delta intervals agree to a few percent,
tests/test_runner.py); with fewer it is NaN. Quantiles (median, 5%, 95%) come from the stored rows.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from madloop import store
from madloop.config import RunConfig
from madloop.errors import MadloopError
from madloop.measure import CONVERGENCE_START, PAIR, SUMS, sums
from madloop.registry import METRICS


def is_distance(metric: str) -> bool:
    """Whether a metric is a distance to p_r (its registered ``distance`` flag), so that its MAD and
    convergence ratios mean something. A named part of a metric (``classes_3`` of ``classes``) has its
    metric's flag; a metric not registered in this process counts as one."""
    while metric not in METRICS and "_" in metric:
        metric = metric.rpartition("_")[0]
    return getattr(METRICS[metric], "distance", True) if metric in METRICS else True


def no_ratio(metric: str, floor: float = np.nan, first: float = np.nan) -> str | None:
    """Why ``metric`` has no MAD or convergence ratio (None: it has them): not a distance to p_r (a trace), an
    estimate that can be zero or negative (KID), or values that reach zero (the real-data floor ``floor`` or
    E[d_1] ``first``), where a ratio of means near zero can be any number."""
    base = metric
    while base not in METRICS and "_" in base:
        base = base.rpartition("_")[0]
    if not is_distance(metric):
        return "not a distance to p_r"
    if base in METRICS and getattr(METRICS[base], "signed", False):
        return "an unbiased estimate that can be zero or negative"
    for name, value in (("real-data floor", floor), ("E[d_1]", first)):
        if value <= 0:
            return f"its {name} is {value:.3g}, not above zero"
    return None


def mean_ci(m) -> tuple[float, float, float]:
    """Mean, standard error and half-width of the 95% Student-t interval from (n, s1, s2)."""
    n = m["n"]
    if n < 2:
        return (m["s1"] / n if n else np.nan), np.nan, np.nan
    mean = m["s1"] / n
    sem = np.sqrt(max(m["s2"] - n * mean**2, 0.0) / (n - 1) / n)
    return float(mean), float(sem), float(stats.t.ppf(0.975, n - 1) * sem)


RESAMPLES = 4000  # bootstrap resamples of the runs: enough for the 0.2% tail that 6 runs need (see ratio_interval)
BOOTSTRAP_SEED = 0  # the resampling is the same in every summary: intervals are reproducible
MIN_RUNS = 5  # fewer runs give a ratio no interval: a bootstrap of 2, 3, 4 runs covers 56%, 76%, 88%, not 95%


def ratio_interval(a, b, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """mean(a) / mean(b) over paired runs (a pair with NaN or inf is left out) and its 95% interval.

    The interval is a percentile bootstrap over runs: ``resamples`` times, draw n runs with replacement
    (each run keeps its pair: a ratio's numerator and denominator share D_r), and take the quantiles of
    mean(a*) / mean(b*). Plain percentiles are too narrow with few runs (their spread is the plug-in one,
    sqrt((n - 1) / n) of the sample's, and the normal shape's quantiles); Hesterberg's expanded percentile
    interval ("What teachers should know about the bootstrap", The American Statistician 69(4), 2015)
    corrects both: it reads the quantiles alpha' / 2 and 1 - alpha' / 2 with
    Phi^-1(alpha' / 2) = -sqrt(n / (n - 1)) t_{n-1, 0.975}, about 0.24% and 99.76% for n = 6. For a mean of
    normal data that is close to the Student-t interval; for a skewed ratio it is asymmetric, as the ratio's
    law is. Deterministic given ``seed``.

    Coverage, measured for skewed correlated pairs (tests/test_results.py's): 0.92 with 5 runs, 0.94 with 6
    to 12 (z with the delta method: 0.88-0.91). With fewer than MIN_RUNS pairs the interval is NaN (the
    ratio is not); with fewer than 2, the ratio too.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = len(a)
    if n < 2 or b.sum() == 0:
        return np.nan, np.nan, np.nan
    if n < MIN_RUNS:
        return float(a.mean() / b.mean()), np.nan, np.nan
    tail = stats.norm.cdf(-np.sqrt(n / (n - 1)) * stats.t.ppf(0.975, n - 1))
    rng = np.random.default_rng(seed)
    chunk = max(1, 2**20 // n)  # resamples drawn at a time: a few MB of indices whatever n is
    star = []
    for k in range(0, resamples, chunk):
        i = rng.integers(0, n, (min(chunk, resamples - k), n))
        with np.errstate(divide="ignore", invalid="ignore"):
            star.append(a[i].sum(1) / b[i].sum(1))
    lo, hi = np.quantile(np.concatenate(star), [tail, 1 - tail])
    return float(a.mean() / b.mean()), float(lo), float(hi)


SUMS_RUNS = 100  # runs without stored rows get a delta-method ratio interval from the sums from this many on


def delta_interval(m) -> tuple[float, float]:
    """The 95% interval of mean(a) / mean(b) from the paired sums ``m`` (np, sa, sb, saa, sbb, sab) by the
    delta method with Student t; NaN with fewer than SUMS_RUNS pairs, where heavy-tailed runs break it."""
    n = m["np"]
    if n < SUMS_RUNS or m["sb"] == 0:
        return np.nan, np.nan
    ma, mb = m["sa"] / n, m["sb"] / n
    r = ma / mb
    var_a, var_b = (m["saa"] - n * ma * ma) / (n - 1), (m["sbb"] - n * mb * mb) / (n - 1)
    cov = (m["sab"] - n * ma * mb) / (n - 1)
    half = stats.t.ppf(0.975, n - 1) * np.sqrt(max(var_a - 2 * r * cov + r * r * var_b, 0.0) / n) / abs(mb)
    return float(r - half), float(r + half)


def ratio_of_sums(m) -> float:
    """mean(a) / mean(b) over the paired runs that the sums ``m`` (np, sa, sb) cover; NaN with fewer than 2."""
    return float(m["sa"] / m["sb"]) if m["np"] >= 2 and m["sb"] != 0 else np.nan


def mad_ratio_intervals(table: pd.DataFrame | None, total: pd.DataFrame) -> dict[tuple[str, int], tuple[float, float]]:
    """(metric, gen) -> the MAD ratio's bootstrap interval where the stored rows hold every run the sums pair,
    else the delta method's on the sums (``delta_interval``)."""
    pairs = total.set_index(["metric", "gen"])["np"]
    out = {}
    for metric, rows in ([] if table is None else table.groupby("metric")):
        values = rows.pivot(index="run", columns="gen", values="value")
        if 1 not in values.columns:
            continue
        for gen in values.columns[values.columns >= 1]:
            a, b = values[gen].to_numpy(), values[1].to_numpy()
            if (np.isfinite(a) & np.isfinite(b)).sum() == pairs.get((metric, gen), -1):
                out[metric, int(gen)] = ratio_interval(a, b)[1:]
    return out


def window_gens(gens, window) -> list:
    """The generations a convergence window averages: t >= ``window`` for an int, start <= t <= end for a
    pair (start, end)."""
    if isinstance(window, tuple) and len(window) == 2:
        start, end = window
    else:
        start, end = window, None
    for v in (start, end):
        if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1):
            raise MadloopError(f"the convergence window must be a positive integer or a pair (start, end) of them, "
                               f"got {window!r}")
    if end is not None and end < start:
        raise MadloopError(f"the convergence window {window!r} ends before it starts")
    return [g for g in gens if g >= start and (end is None or g <= end)]


def summarize(moment_rows: pd.DataFrame, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (metric, gen): n, mean, sem, 95% CI, MAD ratio with its CI, and quantiles of stored runs.

    ``moment_rows`` has columns metric, gen and SUMS (any number of rows per pair: they are summed); ``table``
    the stored per-run rows, which the MAD ratio's bootstrap interval resamples (NaN where they lack runs).
    Generation 0 is the real-data floor; the MAD ratio is relative to generation 1.
    """
    total = moment_rows.groupby(["metric", "gen"], sort=True)[SUMS].sum().reset_index()
    intervals = mad_ratio_intervals(table, total)
    rows = []
    for m in total.to_dict("records"):
        mean, sem, half = mean_ci(m)
        low, high = intervals.get((m["metric"], int(m["gen"])), None) or delta_interval(m)
        rows.append(dict(metric=m["metric"], gen=int(m["gen"]), n=int(m["n"]), mean=mean, sem=sem, ci_low=mean - half,
                         ci_high=mean + half, mad_ratio=ratio_of_sums(m), mad_ratio_low=low, mad_ratio_high=high))
    out = pd.DataFrame(rows)
    if table is not None and len(table) and len(out):
        q = table.groupby(["metric", "gen"]).value.quantile([0.05, 0.5, 0.95]).unstack()
        q.columns = ["q05", "median", "q95"]
        out = out.merge(q.reset_index(), on=["metric", "gen"], how="left")
    return out


@dataclass
class Result:
    """A run directory opened for analysis.

    ``table``: tidy per-run rows (run, gen, metric, value, timing) of the stored runs; ``moments``:
    per-chunk sums over every run; ``convergence``: the per-chunk sums behind the convergence ratio.
    ``incomplete``: None when every run's every generation is there, else what is missing (a run still
    going, stopped, or damaged; `madloop resume` completes the first two).
    """

    path: Path
    config: RunConfig
    table: pd.DataFrame
    moments: pd.DataFrame
    convergence: pd.DataFrame
    incomplete: str | None = None
    _summary: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)

    def summary(self) -> pd.DataFrame:
        """``summarize`` of this run's sums and rows, computed once: its ratio intervals are bootstraps (about 6 s
        for the default job), and summary.csv, the figure and the headline all read it."""
        if self._summary is None:
            self._summary = summarize(self.moments, self.table)
        return self._summary.copy()

    def check_metric(self, metric: str) -> None:
        """Refuse a metric this run did not measure (its ratio would be NaN, as if it had failed)."""
        known = sorted(set(self.moments.metric))
        if metric not in known:
            raise MadloopError(f"{self.path} has no metric '{metric}'; it measured: {', '.join(known)}")

    def per_run(self, metric: str) -> pd.DataFrame:
        """The stored values of ``metric``: a row per run, a column per generation."""
        return self.table[self.table.metric == metric].pivot(index="run", columns="gen", values="value")

    def timing(self) -> tuple[float, float]:
        """Seconds spent training and sampling, and computing metrics, summed over the stored chunks' generations."""
        per_gen = self.table.drop_duplicates(["gen", "train_s", "eval_s"])  # one row per chunk and generation
        return float(per_gen.train_s.sum()), float(per_gen.eval_s.sum())

    def convergence_ratio(self, metric: str, window: int | tuple[int, int] | None = None) -> tuple[float, float, float]:
        """Mean over the generations of ``window`` (t >= window, or start <= t <= end for a pair; default
        t >= 20) of E[d_t], over E[d_1], and its 95% bootstrap interval (``ratio_interval``: each run's mean
        over the window, paired with its generation 1); NaN when no generation reaches the window.

        The default window's ratio reads the per-chunk sums, which cover every run; its bootstrap interval,
        and any other window, need every run's stored rows (runs <= store_runs). Both give the same ratio.
        Without the rows the interval is the delta method's on the sums (``delta_interval``).
        """
        window = CONVERGENCE_START if window is None else window
        window_gens([], window)  # checks it
        self.check_metric(metric)
        stored = self.config.runs <= self.config.store_runs
        if not stored and window != CONVERGENCE_START:
            raise MadloopError(f"a convergence window other than {CONVERGENCE_START} needs every run's rows, but {self.path} "
                               f"kept {self.config.store_runs} of {self.config.runs} runs (store_runs)")
        if not stored:
            rows = self.convergence[self.convergence.metric == metric]
            if not len(rows):
                return np.nan, np.nan, np.nan
            m = rows[PAIR].sum()
            return (ratio_of_sums(m), *delta_interval(m))
        values = self.per_run(metric)
        late = window_gens(values.columns, window)
        if not late or 1 not in values.columns:
            return np.nan, np.nan, np.nan
        # As the runner sums them: each run's mean over the late generations, paired with its generation 1.
        return ratio_interval(values[late].mean(axis=1, skipna=False).to_numpy(), values[1].to_numpy())

    def headline(self, window: int | None = None) -> pd.DataFrame:
        """Per metric: the real-data floor, E[d_1], E[d_T], and for distances the MAD ratio r_T and the
        convergence ratio over generations t >= ``window`` (default 20; NaN when T is shorter), each with
        its 95% interval (``_low``, ``_high``)."""
        rows = []
        for metric, df in self.summary().groupby("metric", sort=False):
            by_gen = df.set_index("gen")
            last = by_gen.index.max()
            row = dict(metric=metric, floor=by_gen["mean"].get(0, np.nan), first=by_gen["mean"].get(1, np.nan),
                       last_gen=int(last), last=by_gen.loc[last, "mean"], mad_ratio=np.nan, mad_ratio_low=np.nan,
                       mad_ratio_high=np.nan, convergence_ratio=np.nan, convergence_ratio_low=np.nan,
                       convergence_ratio_high=np.nan)
            if no_ratio(metric, row["floor"], row["first"]) is None:
                row.update({k: by_gen.loc[last, k] for k in ("mad_ratio", "mad_ratio_low", "mad_ratio_high")})
                row.update(zip(("convergence_ratio", "convergence_ratio_low", "convergence_ratio_high"),
                               self.convergence_ratio(metric, window)))
            rows.append(row)
        return pd.DataFrame(rows)


def compare(a: Result | str | Path, b: Result | str | Path, metric: str,
            window: int | tuple[int, int] | None = None) -> pd.DataFrame:
    """The paired difference b - a of ``metric`` over runs, per generation, with the 95% Student-t interval of
    its mean (SPEC section 5: two configurations run with one seed share D_r and, for training algorithms
    that share streams, generation 1; compare them run by run, not each over its own generation 1).

    Columns: gen, late, n (runs paired), a and b (their means), diff, lo, hi. With ``window`` (t >= window,
    or a pair (start, end): start <= t <= end, as in ``Result.convergence_ratio``), one more row (late =
    True, gen = the window's first generation) pairs each run's mean over the window's generations. A run
    that is not finite in either arm (diverged) pairs with nothing. Refuses results of different seeds or
    numbers of runs, or whose stored runs differ: their runs are not the same draws. ``a`` and ``b`` may be
    run directories, opened with ``load``.
    """
    a, b = (load(r) if isinstance(r, (str, Path)) else r for r in (a, b))
    for setting in ("seed", "runs"):
        if getattr(a.config, setting) != getattr(b.config, setting):
            raise MadloopError(f"compare pairs the runs of one seed and number of runs; {a.path} has {setting} "
                               f"{getattr(a.config, setting)}, {b.path} {setting} {getattr(b.config, setting)}")
    tables = [r.per_run(metric) for r in (a, b)]
    for r, values in zip((a, b), tables):
        if not len(values):
            raise MadloopError(f"{r.path} has no rows of metric '{metric}'")
    if not tables[0].index.equals(tables[1].index):
        raise MadloopError(f"compare pairs run by run, but {a.path} stored runs {list(tables[0].index)[:5]}... and "
                           f"{b.path} runs {list(tables[1].index)[:5]}... (set store_runs alike)")
    va, vb = tables[0].align(tables[1], join="inner", axis=1)
    if len(va) < 2:
        raise MadloopError(f"compare needs at least 2 runs stored in both results, got {len(va)}")
    pairs = [(int(g), False, va[g], vb[g]) for g in va.columns]
    if window is not None:
        late = window_gens(va.columns, window)
        if not late:
            raise MadloopError(f"no stored generation reaches the window {window!r}")
        pairs.append((int(late[0]), True, va[late].mean(axis=1, skipna=False), vb[late].mean(axis=1, skipna=False)))
    out = []
    for gen, is_late, x, y in pairs:
        x, y = x.to_numpy(), y.to_numpy()
        ok = np.isfinite(x) & np.isfinite(y)
        d = y[ok] - x[ok]
        mean, _, half = mean_ci(sums(d, None))
        out.append(dict(gen=gen, late=is_late, n=len(d), a=float(x[ok].mean()), b=float(y[ok].mean()),
                        diff=mean, lo=mean - half, hi=mean + half))
    return pd.DataFrame(out)


def load(path: str | Path):
    """Reopen a run directory (finished or not) as a Result (``madloop.load`` opens sweep folders too)."""
    path = Path(path)
    meta = store.read_meta(path)
    lost = [kind.file for kind in store.KINDS if store.is_finished(path) and not (path / kind.file).is_file()]
    if lost:
        raise MadloopError(f"{path} is a finished run without its {' and '.join(lost)}; run it again with --force to rebuild it")
    table, totals = store.read_table(path), store.read_table(path, store.MOMENTS)
    incomplete = store.gaps(meta, totals, table)
    if incomplete is not None:
        state = "finished but damaged" if store.is_finished(path) else "not finished (madloop resume completes it)"
        incomplete = f"{path} is {state}: {incomplete}"
        warnings.warn(f"incomplete run: {incomplete}", stacklevel=2)
    return Result(path, RunConfig.from_dict(meta["config"]), table, totals, store.read_table(path, store.CONVERGENCE),
                  incomplete)
