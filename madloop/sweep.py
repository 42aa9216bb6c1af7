"""Sweeps: one run per point of a grid of settings, gathered into one tidy table.

    res = madloop.sweep({"omega": [0, 1, 2], "n_synth": [125, 250]}, out="runs/s", loop="augmentation")
    res.table     # run, gen, metric, value, plus one column per swept field
    res.summary() # per swept point, metric and generation: mean, 95% CI, MAD ratio

Each point is an ordinary run directory under ``out`` (``point-000`` ...), so every point can be
opened, plotted or compared on its own.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from madloop import store
from madloop.config import RunConfig, resolve
from madloop.errors import MadloopError
from madloop.results import Result, load

SWEEP = "sweep.json"


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
        return _tag([r.summary() for r in self.results], self.points)


def _tag(frames: list[pd.DataFrame], points: list[dict[str, Any]]) -> pd.DataFrame:
    tagged = [df.assign(**{k: _cell(v) for k, v in p.items()}) for df, p in zip(frames, points)]
    return pd.concat(tagged, ignore_index=True)


def _cell(v: Any) -> Any:
    """A swept value as a table cell (tuples would be spread over rows by pandas)."""
    return str(v) if isinstance(v, (tuple, list)) else v


def sweep(axes: Mapping[str, Sequence[Any]], *, out: str | Path, jobs: int = 1, force: bool = False,
          preset: str | None = None, config_file: str | Path | None = None, config: RunConfig | None = None,
          checkpoint_s: float = 30.0, **settings) -> SweepResult:
    """Run every point of the grid ``axes`` on top of the common ``settings``; all configs are checked first.

    ``out/sweep.json`` records the grid and every point's resolved config, so `madloop resume out`
    finishes an interrupted sweep.
    """
    base = {**(config.to_dict() if config is not None else {}), **settings}
    points = grid(axes)
    configs = [resolve({**base, **p}, preset=preset, config_file=config_file) for p in points]
    out = Path(out)
    if (out / SWEEP).exists() and not force:
        raise MadloopError(f"{out} already holds a sweep; resume it with `madloop resume {out}` or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    record = {"axes": {k: list(v) for k, v in axes.items()}, "points": points, "configs": [c.to_dict() for c in configs]}
    store.atomic_write(out / SWEEP, lambda tmp: tmp.write_text(json.dumps(record, indent=2, default=list) + "\n"))
    return _run_points(out, points, configs, jobs, force, checkpoint_s)


def point_dir(out: Path, i: int) -> Path:
    """The run directory of a sweep's i-th point."""
    return out / f"point-{i:03d}"


def _read_sweep(out: Path) -> tuple[list[dict[str, Any]], list[RunConfig]]:
    try:
        record = json.loads((out / SWEEP).read_text())
        return record["points"], [RunConfig.from_dict(c) for c in record["configs"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MadloopError(f"{out / SWEEP} is missing or corrupted: {err}") from None


def load_sweep(out: str | Path) -> SweepResult:
    """Reopen a finished sweep folder."""
    out = Path(out)
    points, configs = _read_sweep(out)
    return SweepResult(out, points, [load(point_dir(out, i)) for i in range(len(configs))])


def resume_sweep(out: str | Path, *, jobs: int = 1, checkpoint_s: float = 30.0) -> SweepResult:
    """Finish an interrupted sweep: finished points are kept, interrupted ones resumed, missing ones run."""
    out = Path(out)
    points, configs = _read_sweep(out)
    return _run_points(out, points, configs, jobs, False, checkpoint_s)


def _run_points(out: Path, points, configs, jobs: int, force: bool, checkpoint_s: float) -> SweepResult:
    from madloop.runner import execute, resume

    results = []
    for i, cfg in enumerate(configs):
        path = point_dir(out, i)
        if store.is_run_dir(path) and not force:
            results.append(resume(path, jobs=jobs, checkpoint_s=checkpoint_s))
        else:
            results.append(execute(cfg, out=path, jobs=jobs, force=force, checkpoint_s=checkpoint_s))
    return SweepResult(out, points, results)
