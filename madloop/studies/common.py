"""What the studies share: sweeping points in a scratch folder, and their tables (figures: madloop.plots).

Studies keep the *summary* of their runs (per point, metric and generation: mean, standard error, 95% CI,
MAD ratio; see ``madloop.results``), not the per-run rows: that is what their figures show, and it stays
small enough to commit. The sweep's run directories live in a scratch folder that is removed afterwards.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

import madloop
from madloop.plots import LOOP_LABELS  # noqa: F401  (the studies' loop names, re-exported)
from madloop.sweep import SweepResult



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
