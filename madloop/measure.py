"""Measuring one generation of a chunk of runs: every metric's value per run, the rows a run directory
keeps, and the running sums that every summary is built from (``results`` reads them; this module never
reads anything back).

Generation 0 measures a real sample of the evaluation size: the floor of every sample metric. A model
whose samples hold NaN or inf has diverged: its runs are reported (``Diverged``), never measured.

Sums: per metric and generation, a chunk reduces its runs' values to n, s1 = sum v, s2 = sum v^2 and,
paired with the same runs' generation-1 values, np, sa, sb, saa, sbb, sab. Sums add up across chunks, so a
summary covers every run even when only the first ``store_runs`` runs keep per-run rows. The convergence
ratio's sums pair each run's mean over the generations t >= CONVERGENCE_START with its generation 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from madloop.errors import MadloopError
from madloop.metrics import Evaluation
from madloop.rng import Role, RunRNG, generator

CONVERGENCE_START = 20  # the default window W: generations t >= W enter the convergence ratio
PAIR = ["np", "sa", "sb", "saa", "sbb", "sab"]
SUMS = ["n", "s1", "s2", *PAIR]


def sums(values: np.ndarray, first: np.ndarray | None) -> dict[str, float]:
    """Sufficient sums of a metric's values over some runs, paired with their generation-1 values."""
    v = values[np.isfinite(values)]
    out = dict(n=len(v), s1=v.sum(), s2=(v**2).sum())
    if first is None:
        return {**out, **dict.fromkeys(PAIR, 0.0)}
    ok = np.isfinite(values) & np.isfinite(first)
    a, b = values[ok], first[ok]
    return {**out, **dict(np=ok.sum(), sa=a.sum(), sb=b.sum(), saa=(a * a).sum(), sbb=(b * b).sum(), sab=(a * b).sum())}


def reference_sample(cfg, parts) -> np.ndarray:
    """The n_ref real points that every run is measured against (one shared stream), from the source's
    held-out reference pool where it has one (the image sets), else from p_r itself."""
    draw = getattr(parts.points, "reference", parts.points.sample)
    return draw(cfg.n_ref, RunRNG(cfg.seed, range(0, 1), 0, Role.REFERENCE)).x[0]


def needs_points(parts) -> bool:
    """Whether any metric measures samples (the others read the fitted model alone)."""
    return any(not m.model for m in parts.metrics.values())


def nonfinite_runs(samples: np.ndarray | None) -> np.ndarray:
    """Which runs' samples hold NaN or inf (a diverged model)."""
    if samples is None:
        return np.zeros(0, dtype=bool)
    return ~np.isfinite(samples.reshape(len(samples), -1)).all(axis=1)


def evaluate(cfg, parts, runs: range, gen: int, samples: np.ndarray | None, model, reference,
             threads: int, cost=None) -> dict[str, np.ndarray]:
    """Every metric's values (one per run) for one generation of a chunk; a metric that returns named
    arrays (``classes``) adds one entry per name. ``cost``: the remedies' per-run costs (Generation.cost)."""
    values, shared = {}, {}
    for name, metric in parts.metrics.items():
        if model is None and metric.model:
            continue
        ev = Evaluation(samples, reference, model, generator(cfg.seed, gen, Role.metric(name)), threads,
                        getattr(parts.points, "truth", None), parts.points, cost, shared=shared)
        out = metric(ev)
        for key, v in (out.items() if isinstance(out, dict) else [(name, out)]):
            if key != name and not key.startswith(f"{name}_"):
                raise MadloopError(f"metric '{name}' returned a value named '{key}'; its names must be '{name}' or start with '{name}_'")
            values[key] = np.asarray(v, dtype=float)
            if values[key].shape != (len(runs),):
                raise MadloopError(f"metric '{key}' returned shape {values[key].shape}, expected one value per run ({len(runs)})")
    return values


class Diverged(MadloopError):
    """Some runs' samples hold NaN or inf; ``rows`` records them as metric 'failed'."""

    def __init__(self, message: str, rows: pd.DataFrame):
        super().__init__(message)
        self.rows = rows

    def __reduce__(self):  # it travels back from a worker process: rebuild it with both arguments
        return type(self), (str(self), self.rows)


@dataclass
class Tally:
    """A chunk's per-run values that later generations need; a checkpoint carries it."""

    first: dict[str, np.ndarray] = field(default_factory=dict)  # generation 1: the MAD ratio's denominators
    late: dict[str, np.ndarray] = field(default_factory=dict)  # running means over t >= CONVERGENCE_START
    window: int | None = None  # the number of generations those means divide by (the run's, when it started)


class Measure:
    """Measures the generations of one chunk of runs, in order (after a resume, from the checkpoint's)."""

    def __init__(self, cfg, parts, runs: range, threads: int, tally: Tally):
        self.cfg, self.parts, self.runs, self.threads, self.tally = cfg, parts, runs, threads, tally
        self.points = needs_points(parts)
        self.reference = reference_sample(cfg, parts) if self.points else None
        self.run_ids = np.arange(runs.start, runs.stop)
        self.stored = self.run_ids < cfg.store_runs
        self.n_late = cfg.eval_count(CONVERGENCE_START)
        # A run extended to more generations (madloop resume --gens) has a longer window than its checkpoint's means.
        window = getattr(tally, "window", None)  # absent in a checkpoint from before it was recorded
        if window not in (None, self.n_late):
            tally.late = {name: v * window / self.n_late for name, v in tally.late.items()}
        tally.window = self.n_late

    def generation(self, gen: int, samples: np.ndarray | None, model: Any, train_s: float,
                   cost=None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The per-run rows and the sums of generation ``gen`` (``samples``: the n_eval points the metrics
        measure, None when no metric needs them; ``model``: G^t, None at generation 0; ``cost``: the
        remedies' per-run costs, Generation.cost)."""
        bad = nonfinite_runs(samples)
        if bad.any():
            failed = pd.DataFrame({"run": self.run_ids[bad], "gen": gen, "metric": "failed", "value": np.nan})
            raise Diverged(f"generation {gen}: run {self.runs[int(np.argmax(bad))]} (and {int(bad.sum()) - 1} more) "
                           "produced non-finite samples (the model diverged); recorded as metric 'failed'",
                           failed.assign(train_s=train_s, eval_s=0.0))
        clock = time.perf_counter()
        measured = gen == 0 or self.cfg.evaluates(gen)
        values = evaluate(self.cfg, self.parts, self.runs, gen, samples, model, self.reference, self.threads,
                          cost) if measured else {}
        eval_s = time.perf_counter() - clock
        if gen == 1:
            self.tally.first.update(values)
        if gen >= CONVERGENCE_START:
            for name, v in values.items():
                self.tally.late[name] = self.tally.late.get(name, 0.0) + v / self.n_late
        rows = [pd.DataFrame({"run": self.run_ids[self.stored], "gen": gen, "metric": name, "value": v[self.stored]})
                for name, v in values.items()]
        table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["run", "gen", "metric", "value"])
        chunk = self.runs.start
        totals = [dict(chunk=chunk, gen=gen, metric=name, **sums(v, self.tally.first.get(name) if gen >= 1 else None))
                  for name, v in values.items()]
        return table.assign(train_s=train_s, eval_s=eval_s), pd.DataFrame(totals, columns=["chunk", "gen", "metric", *SUMS])

    def convergence(self) -> pd.DataFrame:
        """The sums behind the convergence ratio, once the chunk's last generation is measured."""
        rows = [dict(chunk=self.runs.start, metric=name, **sums(v, self.tally.first[name])) for name, v in self.tally.late.items()]
        return pd.DataFrame(rows, columns=["chunk", "metric", *SUMS])
