"""Sweeps: one run per point of a grid of settings (or of a list of points), gathered into one tidy table.

    res = madloop.sweep({"omega": [0, 1, 2], "n_synth": [125, 250]}, out="runs/s", loop="augmentation")
    res.table     # run, gen, metric, value, plus one column per swept field
    res.summary() # per swept point, metric and generation: mean, 95% CI, MAD ratio

Each point is an ordinary run directory under ``out`` (``point-000`` ...), so every point can be
opened, plotted, compared or resumed on its own. Points run one after the other, each with ``jobs``
workers for its runs, or ``point_jobs`` at a time, each in a worker process of its own: for many small
points that is where the work is. Keyed random streams make the numbers the same either way.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
from joblib import Parallel, delayed

from madloop import store
from madloop.config import RunConfig, resolve
from madloop.errors import MadloopError
from madloop.loop import LOOPS
from madloop.registry import ALGOS, DATA, METRICS, MODELS
from madloop.results import Result, load

SWEEP = "sweep.json"
REGISTRIES = {"data": DATA, "model": MODELS, "algo": ALGOS, "loop": LOOPS, "metric": METRICS}


def grid(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the last axis varying fastest."""
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not len(values):
            raise MadloopError(f"sweep axis '{name}' needs a non-empty list of values, got {values!r}")
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def points_of(axes: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A sweep's points: the ``grid`` of axes (a mapping), or a list of points given as they are."""
    if isinstance(axes, Mapping):
        return grid(axes)
    if isinstance(axes, (str, bytes)) or not isinstance(axes, Sequence) or not len(axes) \
            or not all(isinstance(p, Mapping) for p in axes):
        raise MadloopError(f"a sweep needs axes (setting -> list of values) or a non-empty list of points "
                           f"(each a dict of settings), got {axes!r}")
    return [dict(p) for p in axes]


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


def sweep(axes: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]], *, out: str | Path, jobs: int = 1,
          point_jobs: int = 1, force: bool = False, preset: str | None = None, config_file: str | Path | None = None,
          config: RunConfig | None = None, checkpoint_s: float = 30.0, **settings) -> SweepResult:
    """Run every point of the grid ``axes`` (or of a list of points) on top of the common ``settings``; all
    configs are checked first.

    Each point's runs get ``jobs`` worker processes; ``point_jobs`` points run at once, each in a worker
    process of its own (so up to point_jobs x jobs processes in all). ``out/sweep.json`` records the points
    and every point's resolved config, so `madloop resume out` finishes an interrupted sweep.
    """
    _check_workers(jobs=jobs, point_jobs=point_jobs)
    base = {**(config.to_dict() if config is not None else {}), **settings}
    points = points_of(axes)
    configs = [resolve({**base, **p}, preset=preset, config_file=config_file) for p in points]
    out = Path(out)
    if (out / SWEEP).exists() and not force:
        raise MadloopError(f"{out} already holds a sweep; resume it with `madloop resume {out}` or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    record = {"axes": {k: list(v) for k, v in axes.items()} if isinstance(axes, Mapping) else None, "points": points,
              "configs": [c.to_dict() for c in configs]}
    store.atomic_write(out / SWEEP, lambda tmp: tmp.write_text(json.dumps(record, indent=2, default=list) + "\n"))
    return _run_points(out, points, configs, jobs, point_jobs, force, checkpoint_s)


def point_dir(out: Path, i: int) -> Path:
    """The run directory of a sweep's i-th point."""
    return out / f"point-{i:03d}"


def _read_sweep(out: Path) -> tuple[list[dict[str, Any]], list[RunConfig]]:
    try:
        record = json.loads((out / SWEEP).read_text())
        return record["points"], [RunConfig.from_dict(c) for c in record["configs"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MadloopError(f"{out / SWEEP} is missing or corrupted: {err}") from None


def open_any(path: str | Path) -> Result | SweepResult:
    """Reopen a run directory (a Result, finished or not), an evaluation's (an Evaluation) or a sweep folder (a
    SweepResult): ``madloop.load``."""
    from madloop.evaluate import is_evaluation, load as load_evaluation

    path = Path(path)
    if (path / SWEEP).is_file():
        return load_sweep(path)
    return load_evaluation(path) if is_evaluation(path) else load(path)


def load_sweep(out: str | Path) -> SweepResult:
    """Reopen a finished sweep folder."""
    out = Path(out)
    points, configs = _read_sweep(out)
    return SweepResult(out, points, [load(point_dir(out, i)) for i in range(len(configs))])


def resume_sweep(out: str | Path, *, jobs: int = 1, point_jobs: int = 1, checkpoint_s: float = 30.0) -> SweepResult:
    """Finish an interrupted sweep: finished points are kept, interrupted ones resumed, missing ones run."""
    _check_workers(jobs=jobs, point_jobs=point_jobs)
    out = Path(out)
    points, configs = _read_sweep(out)
    return _run_points(out, points, configs, jobs, point_jobs, False, checkpoint_s)


def _check_workers(**counts: int) -> None:
    for name, n in counts.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise MadloopError(f"{name} must be a positive integer, got {n!r}")


def _run_points(out: Path, points: list[dict[str, Any]], configs: list[RunConfig], jobs: int, point_jobs: int,
                force: bool, checkpoint_s: float) -> SweepResult:
    paths = [point_dir(out, i) for i in range(len(configs))]
    return SweepResult(out, points, run_points(paths, configs, jobs, point_jobs, force, checkpoint_s))


def run_points(paths: list[Path], configs: list[RunConfig], jobs: int = 1, point_jobs: int = 1, force: bool = False,
               checkpoint_s: float = 30.0) -> list[Result]:
    """``run_point`` of each (path, config), ``point_jobs`` at a time, each in a worker process of its own."""
    if point_jobs == 1 or len(configs) == 1:
        return [run_point(path, cfg, jobs, force, checkpoint_s) for path, cfg in zip(paths, configs)]
    # Workers get an absolute path: a reused worker process may have another working directory.
    tasks = (delayed(_run_point_in_worker)(Path(path).absolute(), cfg, registered(cfg), jobs, force, checkpoint_s,
                                           os.getpid()) for path, cfg in zip(paths, configs))
    return Parallel(n_jobs=min(point_jobs, len(configs)))(tasks)


def run_point(path: Path, cfg: RunConfig, jobs: int, force: bool, checkpoint_s: float) -> Result:
    """One point's run directory: a run already there is resumed (or reopened, if finished), else it runs."""
    from madloop.runner import execute, resume

    if store.is_run_dir(path) and not force:
        return resume(path, jobs=jobs, checkpoint_s=checkpoint_s)
    return execute(cfg, out=path, jobs=jobs, force=force, checkpoint_s=checkpoint_s)


def registered(cfg: RunConfig) -> list[tuple[str, str, Any]]:
    """The registered components that ``cfg`` names, as (registry, name, component)."""
    named = [(kind, getattr(cfg, kind)) for kind in ("data", "model", "algo", "loop")]
    return [(kind, name, REGISTRIES[kind][name]) for kind, name in named + [("metric", m) for m in cfg.metrics]]


def _run_point_in_worker(path: Path, cfg: RunConfig, components, jobs: int, force: bool, checkpoint_s: float,
                         parent: int | None = None) -> Result:
    """``run_point`` in a worker process of ``parent``, which first registers the components the caller's process
    knew the config's names by (those a script registered exist only there), and gives torch ``jobs`` threads.
    If ``parent`` dies (SIGKILL), the worker exits within a second, as a run's workers do."""
    from madloop.runner import orphan_watch

    for kind, name, component in components:
        REGISTRIES[kind].register(name, replace=True)(component)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(jobs)
    with orphan_watch(parent):
        return run_point(path, cfg, jobs, force, checkpoint_s)
