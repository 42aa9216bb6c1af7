"""Run directories: the resolved config, a tidy Parquet table appended generation by generation, a log.

    RUN_DIR/config.json            madloop version, format, resolved config
    RUN_DIR/table/part-*.parquet   one file per (chunk of runs, generation), written atomically
    RUN_DIR/table.parquet          all rows, once the run has finished
    RUN_DIR/summary.csv            per (metric, generation): mean, standard error, 95% CI, MAD ratio
    RUN_DIR/log.txt                what happened, with times

A killed run keeps every generation whose part file was written. Columns of the table: run, gen,
metric, value (deterministic), and train_s, eval_s (wall seconds of that chunk's generation).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from madloop.errors import MadloopError

FORMAT = 1
CONFIG, TABLE, PARTS, SUMMARY, LOG = "config.json", "table.parquet", "table", "summary.csv", "log.txt"
COLUMNS = {"run": "int64", "gen": "int64", "metric": "object", "value": "float64", "train_s": "float64", "eval_s": "float64"}


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG).is_file()


def create(path: Path, config: dict[str, Any], *, force: bool = False) -> Path:
    """Make a run directory holding the config; refuse one that holds a run unless ``force``."""
    from madloop import __version__

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MadloopError(f"output path {path} is a file, not a directory")
    if is_run_dir(path):
        if not force:
            raise MadloopError(f"{path} already holds a run; choose another --out or pass --force to replace it")
        for name in (CONFIG, TABLE, SUMMARY, LOG, PARTS, "figures"):
            target = path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    elif path.is_dir() and any(path.iterdir()) and not force:
        raise MadloopError(f"{path} is not empty and holds no run; choose an empty or new --out, or pass --force")
    (path / PARTS).mkdir(parents=True, exist_ok=True)
    meta = {"madloop": __version__, "format": FORMAT, "created": _now(), "config": config}
    atomic_write(path / CONFIG, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
    return path


def read_meta(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not is_run_dir(path):
        raise MadloopError(f"{path} is not a madloop run directory (no {CONFIG})")
    try:
        meta = json.loads((path / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MadloopError(f"{path / CONFIG} is corrupted: {err}") from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise MadloopError(f"{path / CONFIG} is not a madloop run config")
    if meta.get("format", 0) > FORMAT:
        raise MadloopError(f"{path} was written by a newer madloop (format {meta['format']}); upgrade madloop to read it")
    return meta


def part_name(run_start: int, gen: int) -> str:
    return f"part-r{run_start:08d}-g{gen:06d}.parquet"


def append(path: Path, run_start: int, gen: int, rows: pd.DataFrame) -> None:
    """Record one generation of one chunk of runs."""
    rows = rows.astype(COLUMNS)[list(COLUMNS)]
    (Path(path) / PARTS).mkdir(exist_ok=True)
    atomic_write(Path(path) / PARTS / part_name(run_start, gen), lambda tmp: rows.to_parquet(tmp, index=False))


def read_table(path: Path) -> pd.DataFrame:
    """All rows recorded so far, sorted by run, generation and metric."""
    path = Path(path)
    files = ([path / TABLE] if (path / TABLE).is_file() else []) + sorted((path / PARTS).glob("part-*.parquet"))
    try:
        frames = [pd.read_parquet(f) for f in files]
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise MadloopError(f"a results file in {path} is corrupted or truncated: {err}") from None
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})
    return table.sort_values(["run", "gen", "metric"], kind="stable").reset_index(drop=True)


def finish(path: Path, summary: pd.DataFrame) -> None:
    """Gather the part files into one table and write the summary."""
    path = Path(path)
    table = read_table(path)
    atomic_write(path / TABLE, lambda tmp: table.to_parquet(tmp, index=False))
    shutil.rmtree(path / PARTS, ignore_errors=True)
    atomic_write(path / SUMMARY, lambda tmp: summary.to_csv(tmp, index=False))


def log(path: Path, message: str) -> None:
    with open(Path(path) / LOG, "a") as f:
        f.write(f"{_now()} {message}\n")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
