"""Sweeps: one run per point of a grid of settings, gathered into one tidy table.

    res = madloop.sweep({"omega": [0, 1, 2], "n_synth": [125, 250]}, out="runs/s", loop="augmentation")
    res.table     # run, gen, metric, value, plus one column per swept field
    res.summary() # per swept point, metric and generation: mean, 95% CI, MAD ratio

Each point is an ordinary run directory under ``out`` (``point-000`` ...), so every point can be
opened, plotted or compared on its own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from madloop.config import RunConfig, resolve
from madloop.errors import MadloopError
from madloop.results import Result, summarize


def grid(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the last axis varying fastest."""
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not len(values):
            raise MadloopError(f"sweep axis '{name}' needs a non-empty list of values, got {values!r}")
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


@dataclass
class SweepResult:
    """The runs of a sweep: ``points`` (the swept settings of each), their Results, one tidy table."""

    path: Path
    points: list[dict[str, Any]]
    results: list[Result]

    @property
    def table(self) -> pd.DataFrame:
        return _tag([r.table for r in self.results], self.points)

    def summary(self) -> pd.DataFrame:
        return _tag([summarize(r.table) for r in self.results], self.points)


def _tag(frames: list[pd.DataFrame], points: list[dict[str, Any]]) -> pd.DataFrame:
    tagged = [df.assign(**{k: _cell(v) for k, v in p.items()}) for df, p in zip(frames, points)]
    return pd.concat(tagged, ignore_index=True)


def _cell(v: Any) -> Any:
    """A swept value as a table cell (tuples would be spread over rows by pandas)."""
    return str(v) if isinstance(v, (tuple, list)) else v


def sweep(axes: Mapping[str, Sequence[Any]], *, out: str | Path, jobs: int = 1, force: bool = False,
          preset: str | None = None, config_file: str | Path | None = None, config: RunConfig | None = None,
          **settings) -> SweepResult:
    """Run every point of the grid ``axes`` on top of the common ``settings``; all configs are checked first."""
    from madloop.runner import execute

    base = {**(config.to_dict() if config is not None else {}), **settings}
    points = grid(axes)
    configs = [resolve({**base, **p}, preset=preset, config_file=config_file) for p in points]
    out = Path(out)
    results = [execute(cfg, out=out / f"point-{i:03d}", jobs=jobs, force=force) for i, cfg in enumerate(configs)]
    return SweepResult(out, points, results)
