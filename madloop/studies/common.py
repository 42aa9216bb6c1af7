"""What the studies share: sweeping points in a scratch folder, and their tables (figures: madloop.plots).

Studies keep the *summary* of their runs (per point, metric and generation: mean, standard error, 95% CI,
MAD ratio; see ``madloop.results``), not the per-run rows: that is what their figures show, and it stays
small enough to commit. The sweep's run directories live in a scratch folder that is removed afterwards,
unless the study runs ``inside(work)``: then each run keeps its directory in ``work``, named after a hash of
its resolved config, and running the study again with the same ``work`` reopens finished runs, resumes
interrupted ones from their last checkpoint and runs the rest (`madloop study NAME --work DIR`); a study that
shares runs with another (a subset of its points, another scale) reuses them. Keyed random streams make the
numbers the same as in one go.

Studies that do not sweep (the image SIMS studies train and sample by hand) keep their *stages* there instead:
``stage(work, key, compute)`` stores what ``compute`` returns (a trained model, a draw's rows) in
``DIR/stage-<hash of key>.npz``, written whole or not at all, and a second call returns the stored value. The
key holds the study's name, its whole parameters, the group of runs and the stage's name, so a changed
setting never reuses a stale stage. Neither kind of record knows madloop's version: after an upgrade that
changes numbers, start a new work folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

import madloop
from madloop.config import resolve
from madloop.errors import MadloopError
from madloop.plots import LOOP_LABELS  # noqa: F401  (the studies' loop names, re-exported)
from madloop import store
from madloop.sweeps import SweepResult, points_of, run_points

_inside: list[tuple[Path, list[Path]]] = []  # (work, the sweep folders kept in it) of the ``inside`` blocks
T = TypeVar("T")


def sweep(axes: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]], jobs: int, **settings) -> SweepResult:
    """``madloop.sweep`` of ``axes`` (a grid, or a list of points) on top of ``settings``, in a scratch folder that
    is removed afterwards (the Results stay in memory; their paths are gone), or inside a study's ``work`` folder
    (``inside``).

    The points run ``jobs`` at a time, one worker each: for many small runs that is where the work is (each of
    a run's chunks costs a store write per generation).
    """
    with swept(axes, jobs, **settings) as result:
        return result


@contextlib.contextmanager
def swept(axes: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]], jobs: int, **settings):
    """``sweep`` as a block whose runs' folders exist until it ends, for studies that read more than the
    Results hold (sample grids)."""
    if _inside:
        yield _kept_sweep(*_inside[-1], axes, jobs, settings)
        return
    with tempfile.TemporaryDirectory(prefix="madloop-study-") as tmp:
        yield madloop.sweep(axes, out=tmp, point_jobs=jobs, **settings)


@contextlib.contextmanager
def inside(work: str | Path | None):
    """Keep the sweeps of the study run inside the block in ``work`` (see the module's docstring); the block gets
    the list of sweep folders kept. ``work`` None: scratch folders, as without the block."""
    if work is None:
        yield []
        return
    _inside.append((Path(work), []))
    try:
        yield _inside[-1][1]
    finally:
        _inside.pop()


def work_folder() -> Path | None:
    """The work folder of the innermost ``inside`` block (None outside one), for studies that keep stages: pass
    it to the workers that call ``stage`` (a worker process does not see this one's blocks)."""
    return _inside[-1][0] if _inside else None


def stage(work: Path | None, key: Mapping[str, Any], compute: Callable[[], T]) -> T:
    """``compute()``; with a ``work`` folder, its value is stored there under a hash of ``key`` (JSON: the
    study's name, parameters, runs and the stage's name) and read back instead of computed when present.

    The value must be what ``madloop.snapshot`` stores (models, samples, arrays, lists and dicts of them).
    The file is written to a temporary name and renamed, so a kill leaves the stage whole or absent; two
    processes computing the same stage at once both write the same value. A file that cannot be read back is
    refused with its path, not computed again over it.
    """
    if work is None:
        return compute()
    path = Path(work) / f"stage-{hashlib.sha256(_json(key).encode()).hexdigest()[:16]}.npz"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return store.kept(path, compute)
    except OSError as err:
        raise MadloopError(f"cannot keep a stage in {work}: {err.strerror or err}") from None


def keeper(work: Path | None, **key) -> Callable[[str, Callable[[], T]], T]:
    """``kept(name, compute)``: ``stage`` of ``compute`` under ``key`` (the study, its parameters, its runs) and
    the stage's ``name``."""
    return lambda name, compute: stage(work, {**key, "stage": name}, compute)


@contextlib.contextmanager
def evaluated(samplers: Mapping[str, Mapping[str, Any]], jobs: int, **keywords):
    """``madloop.evaluate`` of ``samplers`` as a block: in a scratch folder removed when the block ends, or, inside
    a study's ``work`` folder (``inside``), in its folder there named after a hash of the resolved evaluation, which
    is evaluated, resumed from its kept stages, or reopened. The block gets the Evaluation."""
    from madloop.evaluate import plan

    if not _inside:
        with tempfile.TemporaryDirectory(prefix="madloop-study-") as tmp:
            yield madloop.evaluate(samplers, out=Path(tmp) / "evaluation", jobs=jobs, **keywords)
        return
    work, kept = _inside[-1]
    given = {k: keywords.pop(k) for k in ("draws", "keep") if k in keywords}
    resolved = plan(samplers, settings=keywords, **given).to_dict()
    path = work / f"evaluation-{hashlib.sha256(_json(resolved).encode()).hexdigest()[:16]}"
    kept.append(path)
    if store.is_run_dir(path):
        if json.loads(_json(store.read_meta(path)["config"])) != json.loads(_json(resolved)):
            raise MadloopError(f"{path} records another evaluation than the one its folder is named after (edited?); "
                               f"remove {path} to run it again")
        yield madloop.resume(path, jobs=jobs)
    else:
        yield madloop.evaluate(samplers, out=path, jobs=jobs, **given, **keywords)


def by_groups(group_rows: Callable[..., T], p: Mapping[str, Any], jobs: int) -> list[T]:
    """``group_rows(p, runs, work)`` for each group of ``runs_per_pass`` runs (one grouped U-Net; 4 by default),
    ``jobs`` groups at a time, with this study's work folder (``work_folder``)."""
    group = p["unet"].get("runs_per_pass", 4)
    chunks = [range(r, min(r + group, p["runs"])) for r in range(0, p["runs"], group)]
    return Parallel(n_jobs=min(jobs, len(chunks)))(delayed(group_rows)(p, c, work_folder()) for c in chunks)


def _kept_sweep(work: Path, kept: list[Path], axes, jobs: int, settings: Mapping[str, Any]) -> SweepResult:
    """The sweep of ``axes`` on top of ``settings`` with each run in its folder of ``work``, named after a hash of
    its resolved config: run, resumed, or reopened. Any study that runs the same config shares that run."""
    points = points_of(axes)
    configs = [resolve({**settings, **p}) for p in points]
    paths = [work / f"run-{hashlib.sha256(_json(c.to_dict()).encode()).hexdigest()[:16]}" for c in configs]
    for path, cfg in zip(paths, configs):
        if path.is_dir() and any(path.iterdir()) and not store.is_run_dir(path):
            raise MadloopError(f"{path} holds files but no run; move them away so that the study can run there")
        if store.is_run_dir(path):
            try:
                recorded = store.read_meta(path)["config"]
            except MadloopError as err:
                raise MadloopError(f"{err}; remove {path} to run it again") from None
            if json.loads(_json(recorded)) != json.loads(_json(cfg.to_dict())):
                raise MadloopError(f"{path} records other settings than the run its folder is named after (edited?); "
                                   f"remove {path} to run it again")
    kept += paths
    unique = dict(zip(paths, configs))  # one run for points that resolve to the same config
    results = dict(zip(unique, run_points(list(unique), list(unique.values()), point_jobs=jobs)))
    return SweepResult(work, points, [results[path] for path in paths])


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=list)


def columns_first(table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The table with the columns ``names`` (the settings that tell its rows apart) in front."""
    return table[[*names, *(c for c in table if c not in names)]]


def write_table(table: pd.DataFrame, out: Path, name: str) -> Path:
    path = out / f"{name}.csv"
    table.to_csv(path, index=False, float_format="%.6g")
    return path


def cell(value: float, low: float, high: float, bold: bool = False) -> str:
    """``value [low, high]``; "(no CI)" where there is none (a ratio with fewer than results.MIN_RUNS runs)."""
    text = f"{value:.3g} [{low:.3g}, {high:.3g}]" if np.isfinite(low) and np.isfinite(high) else f"{value:.3g} (no CI)"
    return f"**{text}**" if bold else text
