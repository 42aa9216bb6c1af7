"""Run directories: the resolved config, tidy Parquet tables appended generation by generation, a log.

    RUN_DIR/config.json          madloop version, format, resolved config
    RUN_DIR/table.parquet        per-run rows: run, gen, metric, value, train_s, eval_s
    RUN_DIR/moments.parquet      per (chunk, gen, metric) sums over every run (see results.py)
    RUN_DIR/convergence.parquet  per (chunk, metric) sums behind the convergence ratio
    RUN_DIR/summary.csv          per (metric, gen): mean, standard error, 95% CI, MAD ratio, quantiles
    RUN_DIR/log.txt              what happened, with times
    RUN_DIR/parts/               while running: one file per (kind, chunk, generation), written atomically,
                                 each chunk's last checkpoint (state-*.npz) for `madloop resume`, and
                                 each chunk's lock (chunk-*.lock), held by the worker running it
    RUN_DIR/states/              once finished: each chunk's loop state at its last generation, from which
                                 `madloop resume RUN_DIR --gens N` runs it on
    RUN_DIR/.madloop             the marker: this folder is a madloop run directory, and the digest of the
                                 config its tables were made from (a hand-edited config.json is refused)
    RUN_DIR/.lock                held by the process writing the directory

A killed run keeps every generation whose part files were written. ``value`` is deterministic;
``train_s`` and ``eval_s`` are the wall seconds of that chunk's generation. ``--force`` removes only
the files named here, never other files a user keeps in the folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from madloop import snapshot
from madloop.errors import MadloopError
from madloop.files import __version__, atomic_write  # noqa: F401  (store.atomic_write, as before)

FORMAT = 1
CONFIG, SUMMARY, LOG, PARTS, LOCK, MARKER = "config.json", "summary.csv", "log.txt", "parts", ".lock", ".madloop"
FIGURES = ("figures/summary.png", "figures/summary.pdf")  # what a run writes into its figures folder


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


GRIDS = "grids"  # madloop.grids.FOLDER: the sample grids of image loops
STATES = "states"
MADLOOP_FILES = (CONFIG, SUMMARY, LOG, PARTS, MARKER, GRIDS, STATES, *(k.file for k in KINDS), *FIGURES)


def refused(path: Path, err: OSError) -> MadloopError:
    """A file system's refusal (read-only, no permission, a name too long, no space) as one line naming ``path``."""
    return MadloopError(f"cannot write {path}: {err.strerror or err}")


def is_run_dir(path: Path) -> bool:
    """madloop's marker is there, or (a run written before the marker existed) a config.json madloop wrote."""
    path = Path(path)
    try:
        if (path / MARKER).is_file():
            return True
    except OSError:  # a name too long to look up holds no run
        return False
    try:
        meta = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and {"format", "config"} <= set(meta)


def check_target(path: Path, force: bool) -> None:
    """Refuse an --out that is a file, holds a run (unless ``force``), or holds a user's files."""
    if path.exists() and not path.is_dir():
        raise MadloopError(f"output path {path} is a file, not a directory")
    if not path.is_dir():
        return
    if is_run_dir(path):
        if not force:
            raise MadloopError(f"{path} already holds a run; choose another --out or pass --force to replace it")
        return
    if any(p.name != LOCK for p in path.iterdir()) and not force:
        raise MadloopError(f"{path} is not empty and holds no run; choose an empty or new --out, or pass --force")
    clash = next((name for name in MADLOOP_FILES if (path / name).exists()), None)
    if clash is not None:
        raise MadloopError(f"{path} is not a madloop run but holds {clash}; --force never overwrites files madloop did "
                           "not write: choose another --out")


@contextlib.contextmanager
def claimed(path: Path, config: dict[str, Any], chunks: list[tuple[int, int]], *, force: bool = False,
            notes: dict[str, Any] | None = None):
    """Make a run directory for ``config`` and its chunks of runs, and hold its lock while the block runs.

    The lock is taken before anything is removed or written, so ``force`` on a directory that another
    process is writing fails ("busy") and loses nothing. ``force`` replaces a finished or stopped run,
    removing only madloop's own files; a folder that is not a run keeps every file in it. ``notes`` go into
    config.json beside the config (the feature network that image metrics use, say).
    """
    path = Path(path)
    try:
        check_target(path, force)
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a name too long even to look up, a read-only or full disk
        raise MadloopError(f"cannot create the run directory {path}: {err.strerror or err}") from None
    with locked(path):
        check_target(path, force)  # again, now that no other madloop process can be writing it
        meta = {"madloop": __version__, "format": FORMAT, "created": _now(), "environment": environment(),
                "config": config, "chunks": chunks, **(notes or {})}
        try:
            for name in MADLOOP_FILES:
                target = path / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
            (path / PARTS).mkdir()
            write_meta(path, meta)
            write_marker(path, [config_digest(config)])
        except OSError as err:
            raise MadloopError(f"cannot write the run directory {path}: {err.strerror or err}") from None
        yield path


def environment() -> dict[str, Any]:
    """What can change a run's numbers beside its config: versions, the BLAS, the processor and GPU."""
    import numpy as np
    from threadpoolctl import threadpool_info

    env = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
           "processor": _cpu_name(), "blas": sorted({f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info()
                                                     if i.get("user_api") == "blas"})}
    torch = sys.modules.get("torch")  # only when this run imported it: importing torch costs seconds
    if torch is not None:
        env["torch"] = torch.__version__
        env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of a resolved config's JSON: what a run's tables were made from."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    atomic_write(Path(path) / CONFIG, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))


def switch_config(path: Path, config: dict[str, Any]) -> None:
    """Give a run a new config (``madloop resume --gens``): the marker names both configs' digests while
    config.json changes, so that a crash between the writes leaves a run that one of them describes."""
    meta = read_meta(path)
    write_marker(path, [config_digest(meta["config"]), config_digest(config)])
    write_meta(path, {**meta, "config": config})
    write_marker(path, [config_digest(config)])


def write_marker(path: Path, digests: list[str]) -> None:
    """The marker, with the digests of the configs the tables may have been made from: one, or two while
    ``madloop resume --gens`` switches a run to more generations (a crash between its writes leaves either)."""
    marker = {"madloop": __version__, "format": FORMAT, "config_sha256": digests}
    atomic_write(Path(path) / MARKER, lambda tmp: tmp.write_text(json.dumps(marker) + "\n"))


def read_meta(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not is_run_dir(path):
        raise MadloopError(f"{path} is not a madloop run directory (no {CONFIG})")
    try:
        meta = json.loads((path / CONFIG).read_text())
    except FileNotFoundError:
        raise MadloopError(f"{path / CONFIG} is missing: the run directory is damaged") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MadloopError(f"{path / CONFIG} is corrupted: {err}") from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise MadloopError(f"{path / CONFIG} is not a madloop run config")
    if meta.get("format", 0) > FORMAT:
        raise MadloopError(f"{path} was written by a newer madloop (format {meta['format']}); upgrade madloop to read it")
    recorded = _recorded_digests(path)
    if recorded and config_digest(meta["config"]) not in recorded:
        raise MadloopError(f"{path / CONFIG} was edited after the run was made: its config is not the one its tables "
                           f"were made from (the digest in {path / MARKER}); put the original back, or start a run with "
                           f"the settings you want (more generations: madloop resume {path} --gens N)")
    return meta


def _recorded_digests(path: Path) -> list[str]:
    """The config digests the marker records; none for a run written before madloop recorded them."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise MadloopError(f"{path / MARKER} is corrupted ({err}); it marks {path} as a run directory") from None
    return list(marker.get("config_sha256", [])) if isinstance(marker, dict) else []


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
    # The chunks' last states stay, so that `madloop resume --gens` can run the loop on from them.
    (path / STATES).mkdir(exist_ok=True)
    for f in (path / PARTS).glob("state-*.npz"):
        os.replace(f, path / STATES / f.name)
    shutil.rmtree(path / PARTS, ignore_errors=True)
    atomic_write(path / SUMMARY, lambda tmp: summary.to_csv(tmp, index=False))


def reopen(path: Path, chunks: Sequence[tuple[int, int]], gens: int) -> None:
    """Turn a finished run of ``gens`` generations back into the part files it was made of (``finish`` undone),
    its chunks' last states back into checkpoints; the convergence sums, which close a chunk, are dropped.
    Until the consolidated files are removed, at the end, the finished run is what readers see."""
    path = Path(path)
    rows, moments = read_table(path, ROWS), read_table(path, MOMENTS)
    (path / PARTS).mkdir(exist_ok=True)
    for a, b in chunks:
        mine = rows[(rows.run >= a) & (rows.run < b)]
        for gen in range(gens + 1):  # every generation has its parts, empty where nothing was measured or stored
            append(path, ROWS, a, gen, mine[mine.gen == gen])
            append(path, MOMENTS, a, gen, moments[(moments.chunk == a) & (moments.gen == gen)])
    for f in (path / STATES).glob("state-*.npz"):
        shutil.copyfile(f, path / PARTS / f.name)
    for name in (SUMMARY, STATES, *(k.file for k in KINDS), *FIGURES):
        target = path / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def gaps(meta: dict[str, Any], moments: pd.DataFrame, rows: pd.DataFrame) -> str | None:
    """What a run's tables lack against its config (every chunk's generations 0..T, every stored run's
    row per metric and generation), in words; None when they are complete."""
    cfg, chunks = meta["config"], meta["chunks"]
    have = set(zip(moments.chunk.astype(int), moments.gen.astype(int)))
    # Metrics run at generations 1, every-th and T; generation 0 (the real-data floor) only where a metric
    # measures samples.
    gens = sorted({1, cfg["gens"], *range(1, cfg["gens"] + 1, cfg["every"]), *({0} & {g for _, g in have})})
    missing = [(a, g) for a, _ in chunks for g in gens if (a, g) not in have]
    if missing:
        return (f"{len(missing)} of {len(chunks) * len(gens)} (chunk, generation) results are missing, "
                f"the first: runs from {missing[0][0]}, generation {missing[0][1]}")
    stored = min(cfg["runs"], cfg["store_runs"])
    counts = rows[rows.metric != "failed"].groupby(["gen", "metric"]).size()
    expected = moments[["gen", "metric"]].drop_duplicates()
    short = [(g, m) for g, m in expected.itertuples(index=False) if counts.get((g, m), 0) != stored]
    if short:
        return f"{len(short)} (generation, metric) pairs lack per-run rows, the first: generation {short[0][0]}, {short[0][1]}"
    return None


def is_finished(path: Path) -> bool:
    return (Path(path) / SUMMARY).is_file() and not (Path(path) / PARTS).exists()


def chunk_done(path: Path, chunk: int) -> bool:
    """A chunk's convergence part is its last write: once it exists the chunk has finished."""
    return is_finished(path) or any((Path(path) / PARTS).glob(f"{CONVERGENCE.prefix}-r{chunk:08d}-*.parquet"))


def part_gens(path: Path, kind: Kind, chunk: int) -> set[int]:
    """The generations of one chunk that have a part file of this kind on disk."""
    files = (Path(path) / PARTS).glob(f"{kind.prefix}-r{chunk:08d}-g*.parquet")
    return {int(f.stem.rpartition("-g")[2]) for f in files}


def checkpoint_file(path: Path, chunk: int) -> Path:
    return Path(path) / PARTS / f"state-r{chunk:08d}.npz"


def kept(file: Path, compute: Callable[[], Any]) -> Any:
    """``compute()``'s value, kept in ``file`` as a snapshot: read back when the file exists, else computed and
    written whole or not at all (two processes computing it at once write the same value). A file that cannot be
    read back is refused with its path, never computed again over it."""
    file = Path(file)
    if file.is_file():
        try:
            return snapshot.loads(file.read_bytes())
        except snapshot.SnapshotError as err:
            raise MadloopError(f"{file}: {err}; remove it to compute that stage again") from None
    value = compute()
    data = snapshot.dumps(value)
    atomic_write(file, lambda tmp: tmp.write_bytes(data))
    return value


def write_checkpoint(path: Path, chunk: int, checkpoint: Any) -> None:
    """Save a chunk's loop state in a format that cannot run code when read (see snapshot.py)."""
    data = snapshot.dumps(checkpoint)
    atomic_write(checkpoint_file(path, chunk), lambda tmp: tmp.write_bytes(data))


def read_checkpoint(path: Path, chunk: int) -> Any:
    """A chunk's last checkpoint, or None when it has none."""
    file = checkpoint_file(path, chunk)
    if not file.is_file():
        return None
    try:
        return snapshot.loads(file.read_bytes())
    except Exception as err:  # a damaged checkpoint is never silently skipped
        raise MadloopError(f"checkpoint {file} is corrupted ({err}); delete it to rerun that chunk from the start") from None


def forget_chunk(path: Path, chunk: int) -> None:
    """Drop a chunk's checkpoint and end marker, so that it runs again from generation 0."""
    checkpoint_file(path, chunk).unlink(missing_ok=True)
    forget_convergence(path, chunk)


def forget_convergence(path: Path, chunk: int) -> None:
    """Drop a chunk's end marker (its convergence sums), so that it runs on from its checkpoint."""
    for f in (Path(path) / PARTS).glob(f"{CONVERGENCE.prefix}-r{chunk:08d}-*.parquet"):
        f.unlink()


@contextlib.contextmanager
def _held(file: Path, what: str):
    """Hold ``file``'s exclusive lock while the block runs; fail at once, naming the holder, if it is taken."""
    try:
        f = open(file, "a+")
    except OSError as err:  # a read-only file system: nothing can be written there, so nothing is
        raise refused(file, err) from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise MadloopError(f"{what} is busy: another madloop process ({f.read().strip() or 'unknown pid'}) is writing it") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def locked(path: Path):
    """Hold the run directory's lock: a second writer fails at once instead of mixing its rows in."""
    return _held(Path(path) / LOCK, str(path))


def chunk_lock_file(path: Path, chunk: int) -> Path:
    return Path(path) / PARTS / f"chunk-r{chunk:08d}.lock"


def chunk_locked(path: Path, chunk: int):
    """Held by the worker running a chunk, so that a worker left behind by a killed run is never run beside."""
    return _held(chunk_lock_file(path, chunk), f"chunk {chunk} of {path}")


def check_chunks_free(path: Path, chunks: Sequence[int]) -> None:
    """Fail if a worker (of a killed run, say) still holds one of these chunks."""
    for chunk in chunks:
        if chunk_lock_file(path, chunk).exists():
            with chunk_locked(path, chunk):
                pass


def drop_temporaries(path: Path) -> None:
    """Remove the temporary files of writes that a killed process never finished."""
    for folder in (Path(path), Path(path) / PARTS):
        for f in folder.glob(".*.tmp"):
            f.unlink(missing_ok=True)


def log(path: Path, message: str) -> None:
    with open(Path(path) / LOG, "a") as f:
        f.write(f"{_now()} {message}\n")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
