"""Running a configuration: chunks of runs in parallel, metrics per generation, rows to the store.

The unit of parallel work is a chunk of runs, usually whole stream blocks (``rng.RUNS_PER_BLOCK`` runs
each); the streams give every run the same numbers in any chunk, so the table is the same for any number
of workers. Components travel to the workers as objects
(pickled by joblib), so metrics and models that users registered in their own script work there too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from joblib import Parallel, delayed

from madloop import exact_path, grids, store
from madloop.config import RunConfig, components, resolve, validate
from madloop.errors import MadloopError, Stopped
from madloop.loop import LoopState, generations
from madloop.measure import CONVERGENCE_START, Diverged, Measure, Tally
from madloop.registry import METRICS
from madloop.results import Result, load
from madloop.rng import RUNS_PER_BLOCK, Role, RunRNG, Streams


def own_points(model, n: int, rng: RunRNG, lam: float):
    """A fitted model's n points, drawn with sampling bias lam: what it samples."""
    return model.sample(n, rng, lam)


@dataclass(frozen=True)
class Parts:
    """A configuration's components, built once from their registered names (``build``).

    The loop draws real training sets from ``data`` and trains ``model`` on them with ``algo``; the
    metrics compare a fitted model's points, ``sample_points(model, n, rng, lam)``, with real points
    from ``points``. The two pairs differ only on the exact Gaussian path (madloop/exact_path.py), whose
    training sets are sufficient statistics.
    """

    data: Any
    points: Any
    model: Any
    algo: Any
    metrics: Mapping[str, Callable]
    sample_points: Callable = own_points


def build(cfg: RunConfig) -> Parts:
    """The parts of a resolved configuration, on its path."""
    built = components(cfg)
    parts = Parts(data=built["data"], points=built["data"], model=built["model"], algo=built["algo"],
                  metrics={name: METRICS[name] for name in cfg.metrics})
    return exact_path.parts(cfg, parts) if cfg.path == "exact" else parts


SPLIT_RUNS = 100  # a run count up to this may be split inside its stream block (see chunks)


def chunks(runs: int, jobs: int, split: bool = True, most: int | None = None, group: int = 1) -> list[range]:
    """Split runs 0..runs-1 into ``jobs`` contiguous chunks, or more when a chunk would exceed ``most`` runs.

    Chunks are whole stream blocks, except that with ``split`` up to SPLIT_RUNS runs (a diffusion model's
    few runs on a CPU) are shared evenly among the workers, in whole groups of ``group`` runs (a model
    family's ``run_group``: runs it computes together): a chunk that starts inside a block draws and
    drops the block's earlier rows, which costs little at that size. ``most`` (whole blocks, at least one)
    bounds a chunk's memory: the workers then take the chunks a few at a time.
    """
    if split and runs <= SPLIT_RUNS:
        groups = -(-runs // group)
        bounds = np.minimum(np.linspace(0, groups, max(1, min(jobs, groups)) + 1).round().astype(int) * group, runs)
        return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    n_blocks = -(-runs // RUNS_PER_BLOCK)
    n_chunks = max(jobs, -(-runs // most)) if most else jobs
    bounds = np.linspace(0, n_blocks, min(n_chunks, n_blocks) + 1).round().astype(int)
    return [range(a * RUNS_PER_BLOCK, min(b * RUNS_PER_BLOCK, runs)) for a, b in zip(bounds[:-1], bounds[1:])]


def chunk_limit(cfg: RunConfig, parts: Parts, workers: int) -> int:
    """The most runs a chunk may hold so that ``workers`` chunks at once fit in half the free memory (whole
    blocks); fails, with the estimate and what to change, when one block per worker or the table does not fit."""
    free = available_memory()
    per_run = run_bytes(cfg, parts)
    most = int(free / 2 / max(workers, 1) / per_run) // RUNS_PER_BLOCK * RUNS_PER_BLOCK
    block = min(cfg.runs, RUNS_PER_BLOCK)
    if per_run * block * workers > free / 2:
        raise MadloopError(f"one block of {block} runs needs about {_gb(per_run * block)} per worker ({workers} at once), "
                           f"more than half of the {_gb(free)} of free memory; lower n_real, n_synth or n_eval, or --jobs")
    per_stored_run = (cfg.eval_count() + 1) * len(cfg.metrics) * TABLE_ROW_BYTES
    stored = min(cfg.runs, cfg.store_runs) * per_stored_run
    if stored > free / 2:
        # --store-runs helps only where a run's rows fit many times over; else fewer measured generations do.
        fewer = (f"keep fewer runs' rows with --store-runs (summaries still cover all {cfg.runs} runs)"
                 if per_stored_run * 100 <= free / 2 else
                 f"even one run's rows would need {_gb(per_stored_run)}: lower --gens or measure every k-th generation "
                 "with --every")
        raise MadloopError(f"the table of per-run rows would need about {_gb(stored)}, more than half of the {_gb(free)} of "
                           f"free memory; {fewer}")
    return max(most, RUNS_PER_BLOCK)


TABLE_ROW_BYTES = 100  # one (run, gen, metric, value, timing) row in pandas, with its share of the metric names


def run_bytes(cfg: RunConfig, parts: Parts) -> float:
    """A generous estimate of one run's memory in a chunk: its data sets as float64 values, a few copies
    of each while training and measuring (the exact Gaussian path keeps d x d statistics instead)."""
    d = int(np.prod(parts.points.sample(1, RunRNG(cfg.seed, range(0, 1), 0, Role.REFERENCE)).x.shape[2:]))
    if cfg.path == "exact":
        return 16 * 8 * (d * d + d)
    kept = cfg.gens if cfg.accumulate and cfg.budget is None else 1 + (cfg.budget or 0) // cfg.n_synth
    return 4 * 8 * d * (2 * cfg.n_real + 2 * cfg.n_synth * kept + cfg.n_eval)


def available_memory() -> float:
    """Bytes of memory free for new work (MemAvailable on Linux; all physical memory elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


@dataclass
class Checkpoint:
    """What a chunk needs to continue after generation ``state.gen``: the loop state and the measurements'
    per-run values that later generations need."""

    state: LoopState
    tally: Tally


def uses_torch(parts: Parts) -> bool:
    """Whether the model family runs on torch (its spec names a device); torch is imported only then."""
    return hasattr(parts.model, "device")


def gpu_count(parts: Parts) -> int:
    """GPUs the model family will use (0 on CPU): with several, each chunk of runs gets its own."""
    if str(getattr(parts.model, "device", "cpu")) not in ("cuda", "auto"):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_chunk(cfg: RunConfig, parts: Parts, runs: range, path: Path, threads: int, torch_threads: int | None,
              checkpoint_s: float = 30.0, gpu: int | None = None, parent: int | None = None) -> Diverged | None:
    """All generations of one chunk of runs; each generation's results are stored as soon as they exist.

    The chunk saves a checkpoint at most every ``checkpoint_s`` seconds; a rerun continues from it.
    Generations after the checkpoint are recomputed exactly (keyed streams), overwriting their parts.
    The worker holds the chunk's lock throughout; ``parent`` is the pid of the process that started it.
    A chunk whose model diverges stops there and returns the error, its 'failed' rows written: raised, it
    would make joblib kill the other workers before they record their own.
    """
    with store.chunk_locked(path, runs.start), orphan_watch(parent):
        try:
            _run_chunk(cfg, parts, runs, path, threads, torch_threads, checkpoint_s, gpu)
        except Diverged as err:
            return err
    return None


def orphan_watch(parent: int | None):
    """In a worker process of ``parent``: exit within a second once that process has died (SIGKILL), so
    no worker finishes a run on its own while a `madloop resume` runs. Elsewhere (the main process, dask
    or ray workers on other machines) it does nothing."""
    if parent is None or os.getpid() == parent or os.getppid() != parent:
        return contextlib.nullcontext()
    return _watching(parent)


@contextlib.contextmanager
def _watching(parent: int):
    stop = threading.Event()

    def watch():
        while not stop.wait(0.5):
            if os.getppid() != parent:
                os._exit(1)  # its writes are atomic and its chunk lock dies with it

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def prepare_worker(parts: Parts, torch_threads: int | None, gpu: int | None) -> None:
    """A worker's share of the cores for torch, and its GPU when there are several."""
    if uses_torch(parts) or "torch" in sys.modules:
        import torch

        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        if gpu is not None:
            torch.cuda.set_device(gpu)  # "cuda" now means this worker's GPU


def _run_chunk(cfg: RunConfig, parts: Parts, runs: range, path: Path, threads: int, torch_threads: int | None,
               checkpoint_s: float, gpu: int | None) -> None:
    prepare_worker(parts, torch_threads, gpu)
    streams = Streams(cfg.seed, runs, cfg.runs)
    ck = store.read_checkpoint(path, runs.start) or Checkpoint(None, Tally())
    measure = Measure(cfg, parts, runs, threads, ck.tally)

    def record(gen, samples, model, train_s, cost=None):
        try:
            rows, sums = measure.generation(gen, samples, model, train_s, cost)
        except Diverged as err:
            store.append(path, store.ROWS, runs.start, gen, err.rows)
            raise
        store.append(path, store.ROWS, runs.start, gen, rows)
        store.append(path, store.MOMENTS, runs.start, gen, sums)

    pictures = grids.Grids(cfg, parts, runs, path) if grids.wanted(parts.points) else None
    if ck.state is None:
        # Generation 0: a real sample of the evaluation size, the floor of every sample metric.
        record(0, parts.points.sample(cfg.n_eval, streams.at(0, Role.EVAL)).x if measure.points else None, None, 0.0)
        if pictures:
            pictures.save(0, None)
    clock = saved = time.perf_counter()
    for g in generations(cfg, parts, runs, ck.state):
        train_s = time.perf_counter() - clock
        samples = None
        if cfg.evaluates(g.gen) and measure.points:
            samples = parts.sample_points(g.model, cfg.n_eval, streams.at(g.gen, Role.EVAL), cfg.lam).x
        record(g.gen, samples, g.model, train_s, g.cost)
        if pictures:
            pictures.save(g.gen, g.model)
        # The last generation's state is always kept: `madloop resume --gens` runs a finished run on from it.
        if time.perf_counter() - saved >= checkpoint_s or g.gen == cfg.gens:
            ck.state = g.state
            store.write_checkpoint(path, runs.start, ck)
            saved = time.perf_counter()
        clock = time.perf_counter()
    store.append(path, store.CONVERGENCE, runs.start, cfg.gens, measure.convergence())


def default_out(cfg: RunConfig) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{cfg.loop}-{cfg.model}-{cfg.algo}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def execute(cfg: RunConfig, *, out: str | Path | None = None, jobs: int = 1, force: bool = False,
            on_progress: Callable[[int, int], None] | None = None, checkpoint_s: float = 30.0) -> Result:
    """Run a resolved configuration into a new run directory and return its Result."""
    _check_jobs(jobs, checkpoint_s)
    parts = build(cfg)
    check_device(parts)
    gpus = gpu_count(parts)
    workers = max(jobs, gpus)  # one worker per GPU at least
    work = chunks(cfg.runs, workers, split=not gpus, most=chunk_limit(cfg, parts, min(workers, -(-cfg.runs // RUNS_PER_BLOCK))),
                  group=getattr(parts.model, "run_group", None) or 1)
    path = Path(out) if out is not None else default_out(cfg)
    with store.claimed(path, cfg.to_dict(), [(r.start, r.stop) for r in work], force=force, notes=metric_notes(parts)):
        return _drive(cfg, parts, path, jobs, on_progress, checkpoint_s, "start")


def metric_notes(parts: Parts) -> dict[str, Any]:
    """What the run's metrics record in config.json beside the config, from each metric's ``prepare`` hook
    (madloop.metrics.base), run here once before the workers start: the image metrics' feature network (trained
    here, so the workers find it cached; SPEC 5: FIDs of different networks are not comparable) and the Inception
    weights file of ``fid_inception`` (read here, so a missing or wrong file fails before the run starts)."""
    notes = {}
    for metric in parts.metrics.values():
        if metric.prepare is not None:
            notes.update(metric.prepare(parts.points))
    return notes


def resume(path: str | Path, *, jobs: int = 1, on_progress: Callable[[int, int], None] | None = None,
           checkpoint_s: float = 30.0, gens: int | None = None) -> Result:
    """Continue an interrupted run from its chunks' last checkpoints; the table ends up as if never stopped.
    ``gens``: run a finished (or interrupted) run on to that many generations (``extend``)."""
    _check_jobs(jobs, checkpoint_s)
    path = Path(path)
    cfg = RunConfig.from_dict(store.read_meta(path)["config"])
    validate(cfg)
    if gens is not None and gens != cfg.gens:
        return extend(path, cfg, gens, jobs, on_progress, checkpoint_s)
    if store.is_finished(path) and not os.access(path, os.W_OK):
        return load(path)  # a finished run on a read-only disk: nothing to write, and nothing can be writing it
    with store.locked(path):
        if store.is_finished(path):
            return load(path)
        parts = build(cfg)
        check_device(parts)
        recorded = store.read_meta(path).get("inception")
        if recorded and metric_notes(parts)["inception"]["sha256"] != recorded["sha256"]:
            raise MadloopError(f"the Inception weights file {recorded['file']} has changed since {path} started (its "
                               f"FIDs were measured with {recorded['identity']}); put that file back to resume")
        return _drive(cfg, parts, path, jobs, on_progress, checkpoint_s, "resume")


def extend(path: Path, cfg: RunConfig, gens: int, jobs: int, on_progress, checkpoint_s: float) -> Result:
    """Run a run of T = cfg.gens generations on to ``gens``; the table ends as a run of ``gens`` generations from
    the start would (keyed streams; tested exactly).

    The finished run turns back into its parts (``store.reopen``), and each chunk continues from its state at
    generation T (the convergence window's running means are rescaled to the longer window: Measure). A chunk
    without a kept state (a run finished by an older madloop), or a run whose generation T the longer run would
    not measure (``every``), runs again from generation 0.
    """
    if not isinstance(gens, int) or isinstance(gens, bool) or gens < cfg.gens:
        raise MadloopError(f"--gens {gens!r}: resume runs {path} on past its {cfg.gens} generations; give a larger "
                           f"number (fewer generations: start a new run)")
    longer = dataclasses.replace(cfg, gens=gens)
    validate(longer)
    chunks = store.read_meta(path)["chunks"]
    with store.locked(path):
        if store.is_finished(path):
            store.reopen(path, chunks, cfg.gens)
        for a, _ in chunks:
            ck = store.read_checkpoint(path, a)
            if ck is None or (ck.state.gen == cfg.gens and not longer.evaluates(cfg.gens)):
                store.forget_chunk(path, a)  # no state to go on from, or a generation T the longer run does not measure
                continue
            if getattr(ck.tally, "window", None) is None:  # written before checkpoints recorded it: this run's window
                ck.tally.window = cfg.eval_count(CONVERGENCE_START)
                store.write_checkpoint(path, a, ck)
            store.forget_convergence(path, a)
        store.switch_config(path, longer.to_dict())
        store.log(path, f"extend: {cfg.gens} -> {gens} generations")
        parts = build(longer)
        check_device(parts)
        return _drive(longer, parts, path, jobs, on_progress, checkpoint_s, "resume")


def _check_jobs(jobs: int, checkpoint_s: float) -> None:
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise MadloopError(f"jobs must be a positive integer, got {jobs!r}")
    if not isinstance(checkpoint_s, (int, float)) or isinstance(checkpoint_s, bool) or not 0 <= checkpoint_s < math.inf:
        raise MadloopError(f"checkpoint_s must be a number of seconds >= 0, got {checkpoint_s!r}")


def check_device(parts: Parts) -> None:
    """A model asked to run on a GPU that this machine does not have fails before anything is written."""
    device = str(getattr(parts.model, "device", "cpu"))
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise MadloopError(f"device '{device}' was asked for, but torch sees no CUDA GPU here "
                               f"(torch {torch.__version__}); use --device cpu or --device auto")


def unfinished(cfg: RunConfig, path: Path, work: list[range]) -> list[range]:
    """The chunks still to run. A chunk whose recorded generations are not all on disk (a part file lost
    or deleted) loses its checkpoint and end marker and runs again from generation 0, which redoes its
    parts exactly (keyed streams)."""
    todo = []
    for r in work:
        if store.chunk_done(path, r.start):
            upto = cfg.gens
        else:
            ck = store.read_checkpoint(path, r.start)
            upto = -1 if ck is None else ck.state.gen
        present = store.part_gens(path, store.ROWS, r.start) & store.part_gens(path, store.MOMENTS, r.start)
        if not set(range(upto + 1)) <= present:
            lost = sorted(set(range(upto + 1)) - present)
            store.log(path, f"chunk {r.start}: part files of generation(s) {', '.join(map(str, lost[:10]))} are missing; "
                            "running the chunk again from generation 0")
            store.forget_chunk(path, r.start)
        if not store.chunk_done(path, r.start):
            todo.append(r)
    return todo


def _drive(cfg: RunConfig, parts: Parts, path: Path, jobs: int, on_progress, checkpoint_s: float, verb: str) -> Result:
    """Run the unfinished chunks of a run directory whose lock the caller holds, then gather its tables.

    SIGTERM (a batch scheduler's preemption) stops the workers like Ctrl-C and leaves the directory
    resumable; a worker whose main process was killed outright stops by itself (``orphan_watch``).
    """
    work = [range(a, b) for a, b in store.read_meta(path)["chunks"]]
    (path / store.PARTS).mkdir(exist_ok=True)
    store.check_chunks_free(path, [r.start for r in work])
    store.drop_temporaries(path)
    todo = unfinished(cfg, path, work)
    threads = max(1, jobs // max(len(todo), 1))  # each worker's share of the cores (torch, POT)
    gpus = gpu_count(parts)
    jobs = max(jobs, gpus)
    store.log(path, f"{verb}: {cfg.runs} runs x {cfg.gens} generations, {len(todo)} of {len(work)} chunks to run, jobs={jobs}")
    total = len(work) * (cfg.gens + 1)
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(path, total, done, on_progress), daemon=True) if on_progress else None
    if watcher:
        watcher.start()
    try:
        with stop_on_sigterm():
            # Workers get an absolute path: a reused worker process may have another working directory.
            tasks = (delayed(run_chunk)(cfg, parts, r, path.absolute(), threads, threads if jobs > 1 else None, checkpoint_s,
                                        work.index(r) % gpus if gpus > 1 else None, os.getpid()) for r in todo)
            diverged = [err for err in Parallel(n_jobs=max(1, min(jobs, len(todo))))(tasks) if err is not None]
            if len(diverged) > 1:  # every chunk has recorded its own 'failed' rows; the first names its run
                raise Diverged(f"{diverged[0]}; {len(diverged)} of {len(todo)} chunks of runs diverged, each recorded",
                               diverged[0].rows)
            if diverged:
                raise diverged[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = load(path)
            if result.incomplete:  # never consolidate (and drop the parts of) a table with holes
                raise MadloopError(f"{result.incomplete}; `madloop resume {path}` runs what is missing")
            store.finish(path, (result.table, result.moments, result.convergence), result.summary())
    except KeyboardInterrupt:
        _try_log(path, "interrupted; continue with: madloop resume " + str(path))
        raise
    except MadloopError as err:  # a diverged model or bad input: a resume would stop at the same place
        _try_log(path, f"stopped: {err}")
        raise
    except OSError as err:
        _try_log(path, f"stopped: {type(err).__name__}: {err}; continue with: madloop resume {path}")
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise MadloopError(f"the disk holding {path} is full ({err}); free some space, then: madloop resume {path}") from None
        raise
    except BaseException as err:
        _try_log(path, f"stopped: {type(err).__name__}: {err}; continue with: madloop resume {path}")
        raise
    finally:
        done.set()
        if watcher:
            watcher.join()
    store.log(path, "finished")
    return result


def _try_log(path: Path, message: str) -> None:
    """Log a stop; a full disk may refuse even that line, and the stop's own error matters more."""
    try:
        store.log(path, message)
    except OSError:
        pass


@contextlib.contextmanager
def stop_on_sigterm():
    """Turn SIGTERM into a Stopped exception in the main thread while the block runs (elsewhere: nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def training_rate(cfg: RunConfig, done: int, total: int, start: int, seconds: float) -> float | None:
    """Training images per second across all workers, from the stored parts alone (no messages from the workers).

    ``done`` of the ``total`` (chunk, generation) parts are stored, ``start`` of them were stored ``seconds``
    ago (when the bar started; a resume starts with parts on disk). Each chunk stores generation 0 first (a
    real sample: no training), then one part per generation that trained its share ``runs / chunks`` of the
    runs on ``images`` training images each (the unet's budget per run and generation). Wall-clock time, so
    sampling and metrics count too; chunks of unequal size make it an estimate. None for model families
    without an images budget, and for algorithms other than standard, which also train auxiliary models."""
    per_fit = cfg.model_options.get("images")
    if per_fit is None or cfg.algo != "standard" or seconds <= 0:
        return None
    chunks = max(1, total // (cfg.gens + 1))

    def images(parts: int) -> float:
        return max(0, parts - chunks) * cfg.runs / chunks * per_fit

    return (images(done) - images(start)) / seconds


def _watch(path: Path, total: int, done: threading.Event, on_progress) -> None:
    """Report the number of stored (chunk, generation) parts until the run ends."""
    while not done.wait(0.25):
        on_progress(len(list((path / store.PARTS).glob(f"{store.MOMENTS.prefix}-*.parquet"))), total)
    on_progress(total, total)


def run(config: RunConfig | None = None, *, preset: str | None = None, config_file: str | Path | None = None,
        out: str | Path | None = None, jobs: int = 1, force: bool = False, **settings) -> Result:
    """Run a self-consuming loop; keywords are named like the CLI flags (``n_synth=``, ``omega=`` ...).

    ``out=None`` writes to ``runs/<loop>-<model>-<algo>-<time>``. Returns a Result whose ``table`` is the
    tidy DataFrame and whose ``summary()`` gives means, 95% CIs and MAD ratios per generation.
    """
    if config is not None:
        settings = {**config.to_dict(), **settings}
    cfg = resolve(settings, preset=preset, config_file=config_file)
    return execute(cfg, out=out, jobs=jobs, force=force)
