"""Run directories: the resolved config, tidy Parquet tables appended generation by generation, a log.

    RUN_DIR/config.json          madloop version, format, resolved config
    RUN_DIR/table.parquet        per-run rows: run, gen, metric, value, train_s, eval_s
    RUN_DIR/moments.parquet      per (chunk, gen, metric) sums over every run (see results.py)
    RUN_DIR/convergence.parquet  per (chunk, metric) sums behind the convergence ratio
    RUN_DIR/summary.csv          per (metric, gen): mean, standard error, 95% CI, MAD ratio, quantiles
    RUN_DIR/log.txt              what happened, with times
    RUN_DIR/parts/               while running: one file per (kind, chunk, generation), written atomically,
                                 and each chunk's last checkpoint (state-*.pkl) for `madloop resume`
    RUN_DIR/.lock                held by the process writing the directory

A killed run keeps every generation whose part files were written. ``value`` is deterministic;
``train_s`` and ``eval_s`` are the wall seconds of that chunk's generation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from madloop.errors import MadloopError

FORMAT = 1
CONFIG, SUMMARY, LOG, PARTS, LOCK = "config.json", "summary.csv", "log.txt", "parts", ".lock"


@dataclass(frozen=True)
class Kind:
    """One kind of table: its file once finished, its part-file prefix and its columns."""

    file: str
    prefix: str
    columns: dict[str, str]


ROWS = Kind("table.parquet", "rows", {"run": "int64", "gen": "int64", "metric": "object", "value": "float64",
                                     "train_s": "float64", "eval_s": "float64"})
_SUMS = {k: "float64" for k in ("n", "s1", "s2", "np", "sa", "sb", "saa", "sbb", "sab")}
MOMENTS = Kind("moments.parquet", "moments", {"chunk": "int64", "gen": "int64", "metric": "object", **_SUMS})
CONVERGENCE = Kind("convergence.parquet", "conv", {"chunk": "int64", "metric": "object", **_SUMS})
KINDS = (ROWS, MOMENTS, CONVERGENCE)


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


def create(path: Path, config: dict[str, Any], chunks: list[tuple[int, int]], *, force: bool = False) -> Path:
    """Make a run directory holding the config and its chunks of runs; refuse one that holds a run unless ``force``."""
    from madloop import __version__

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MadloopError(f"output path {path} is a file, not a directory")
    if is_run_dir(path):
        if not force:
            raise MadloopError(f"{path} already holds a run; choose another --out or pass --force to replace it")
        for name in (CONFIG, SUMMARY, LOG, PARTS, "figures", *(k.file for k in KINDS)):
            target = path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    elif path.is_dir() and any(path.iterdir()) and not force:
        raise MadloopError(f"{path} is not empty and holds no run; choose an empty or new --out, or pass --force")
    (path / PARTS).mkdir(parents=True, exist_ok=True)
    meta = {"madloop": __version__, "format": FORMAT, "created": _now(), "config": config, "chunks": chunks}
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


def append(path: Path, kind: Kind, chunk: int, gen: int, rows: pd.DataFrame) -> None:
    """Record one generation of one chunk of runs (chunk = its first run)."""
    rows = rows.astype(kind.columns)[list(kind.columns)]
    (Path(path) / PARTS).mkdir(exist_ok=True)
    name = f"{kind.prefix}-r{chunk:08d}-g{gen:06d}.parquet"
    atomic_write(Path(path) / PARTS / name, lambda tmp: rows.to_parquet(tmp, index=False))


def read_table(path: Path, kind: Kind = ROWS) -> pd.DataFrame:
    """All rows of one kind recorded so far, in a fixed order."""
    path = Path(path)
    # Once the consolidated file exists it holds everything (parts left by a crash inside finish() are stale).
    done = path / kind.file
    files = [done] if done.is_file() else sorted((path / PARTS).glob(f"{kind.prefix}-*.parquet"))
    try:
        frames = [pd.read_parquet(f) for f in files]
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise MadloopError(f"a results file in {path} is corrupted or truncated: {err}") from None
    frames = [f for f in frames if len(f)]
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in kind.columns.items()})
    table = pd.concat(frames, ignore_index=True) if frames else empty
    order = [c for c in ("run", "chunk", "gen", "metric") if c in table]
    return table.sort_values(order, kind="stable").reset_index(drop=True)


def finish(path: Path, tables: Sequence[pd.DataFrame], summary: pd.DataFrame) -> None:
    """Write one file per kind (``tables`` in the order of KINDS, as read from the parts), drop the parts,
    and write the summary."""
    path = Path(path)
    for kind, table in zip(KINDS, tables, strict=True):
        atomic_write(path / kind.file, lambda tmp: table.to_parquet(tmp, index=False))
    shutil.rmtree(path / PARTS, ignore_errors=True)
    atomic_write(path / SUMMARY, lambda tmp: summary.to_csv(tmp, index=False))


def is_finished(path: Path) -> bool:
    return (Path(path) / SUMMARY).is_file() and not (Path(path) / PARTS).exists()


def chunk_done(path: Path, chunk: int) -> bool:
    """A chunk's convergence part is its last write: once it exists the chunk has finished."""
    return is_finished(path) or any((Path(path) / PARTS).glob(f"{CONVERGENCE.prefix}-r{chunk:08d}-*.parquet"))


def write_checkpoint(path: Path, chunk: int, checkpoint: Any) -> None:
    atomic_write(Path(path) / PARTS / f"state-r{chunk:08d}.pkl", lambda tmp: tmp.write_bytes(pickle.dumps(checkpoint)))


def read_checkpoint(path: Path, chunk: int) -> Any:
    """A chunk's last checkpoint, or None when it has none."""
    file = Path(path) / PARTS / f"state-r{chunk:08d}.pkl"
    if not file.is_file():
        return None
    try:
        return pickle.loads(file.read_bytes())
    except Exception as err:  # a damaged checkpoint is never silently skipped
        raise MadloopError(f"checkpoint {file} is corrupted ({err}); delete it to rerun that chunk from the start") from None


@contextlib.contextmanager
def locked(path: Path):
    """Hold the run directory's lock: a second writer fails at once instead of mixing its rows in."""
    with open(Path(path) / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise MadloopError(f"{path} is busy: another madloop process ({f.read().strip() or 'unknown pid'}) is writing it") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def log(path: Path, message: str) -> None:
    with open(Path(path) / LOG, "a") as f:
        f.write(f"{_now()} {message}\n")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
