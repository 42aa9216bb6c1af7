"""Running a configuration: chunks of runs in parallel, metrics per generation, rows to the store.

The unit of parallel work is a chunk of whole stream blocks (``rng.RUNS_PER_BLOCK`` runs each), so
the table is the same for any number of workers. Components travel to the workers as objects
(pickled by joblib), so metrics and models that users registered in their own script work there too.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from madloop import store
from madloop.config import RunConfig, build_data, resolve
from madloop.errors import MadloopError
from madloop.loop import generations
from madloop.metrics import Evaluation
from madloop.registry import ALGOS, METRICS, MODELS
from madloop.results import Result, load, summarize
from madloop.rng import RUNS_PER_BLOCK, RunRNG, Streams, generator


@dataclass(frozen=True)
class Parts:
    """A configuration's components, built from their registered names."""

    data: Any
    model: Any
    algo: Any
    metrics: Mapping[str, Callable]


def build(cfg: RunConfig) -> Parts:
    return Parts(
        data=build_data(cfg),
        model=MODELS[cfg.model](**cfg.model_options),
        algo=ALGOS[cfg.algo](**cfg.algo_options),
        metrics={name: METRICS[name] for name in cfg.metrics},
    )


def chunks(runs: int, jobs: int) -> list[range]:
    """Split runs 0..runs-1 into at most ``jobs`` contiguous chunks of whole stream blocks."""
    n_blocks = -(-runs // RUNS_PER_BLOCK)
    bounds = np.linspace(0, n_blocks, min(jobs, n_blocks) + 1).round().astype(int)
    return [range(a * RUNS_PER_BLOCK, min(b * RUNS_PER_BLOCK, runs)) for a, b in zip(bounds[:-1], bounds[1:])]


def reference_sample(cfg: RunConfig, data) -> np.ndarray:
    """The n_ref real points that every run is measured against (one shared stream)."""
    return data.sample(cfg.n_ref, RunRNG(cfg.seed, range(0, 1), 0, "reference")).x[0]


def evaluate(cfg: RunConfig, parts: Parts, runs: range, gen: int, samples: np.ndarray, model, reference, threads: int) -> pd.DataFrame:
    """The tidy rows (run, gen, metric, value) of one generation of a chunk."""
    bad = ~np.isfinite(samples.reshape(len(runs), -1)).all(axis=1)
    if bad.any():
        first = runs[int(np.argmax(bad))]
        raise MadloopError(f"generation {gen}: run {first} (and {int(bad.sum()) - 1} more) produced non-finite samples")
    frames = []
    for name, metric in parts.metrics.items():
        if model is None and getattr(metric, "needs_model", False):
            continue
        ev = Evaluation(samples, reference, model, generator(cfg.seed, gen, f"metric/{name}"), threads)
        values = np.asarray(metric(ev), dtype=float)
        if values.shape != (len(runs),):
            raise MadloopError(f"metric '{name}' returned shape {values.shape}, expected one value per run ({len(runs)})")
        frames.append(pd.DataFrame({"run": np.asarray(runs), "gen": gen, "metric": name, "value": values}))
    return pd.concat(frames, ignore_index=True)


def run_chunk(cfg: RunConfig, parts: Parts, runs: range, path: Path, threads: int, torch_threads: int | None) -> None:
    """All generations of one chunk of runs; each generation's rows are stored as soon as they exist."""
    if torch_threads is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(torch_threads)
    streams = Streams(cfg.seed, runs)
    reference = reference_sample(cfg, parts.data)
    eval_gens = set(cfg.eval_gens())

    def record(gen, samples, model, train_s):
        start = time.perf_counter()
        rows = evaluate(cfg, parts, runs, gen, samples, model, reference, threads) if samples is not None else None
        rows = rows if rows is not None else pd.DataFrame(columns=["run", "gen", "metric", "value"])
        store.append(path, runs.start, gen, rows.assign(train_s=train_s, eval_s=time.perf_counter() - start))

    # Generation 0: a real sample of the evaluation size, the floor of every metric.
    record(0, parts.data.sample(cfg.n_eval, streams.at(0, "eval")).x, None, 0.0)
    clock = time.perf_counter()
    for g in generations(cfg, parts, runs):
        train_s = time.perf_counter() - clock
        samples = g.model.sample(cfg.n_eval, streams.at(g.gen, "eval"), cfg.lam).x if g.gen in eval_gens else None
        record(g.gen, samples, g.model, train_s)
        clock = time.perf_counter()


def default_out(cfg: RunConfig) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{cfg.loop}-{cfg.model}-{cfg.algo}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def execute(cfg: RunConfig, *, out: str | Path | None = None, jobs: int = 1, force: bool = False,
            on_progress: Callable[[int, int], None] | None = None) -> Result:
    """Run a resolved configuration into a run directory and return its Result."""
    if not isinstance(jobs, int) or jobs < 1:
        raise MadloopError(f"jobs must be a positive integer, got {jobs!r}")
    parts = build(cfg)
    path = store.create(Path(out) if out is not None else default_out(cfg), cfg.to_dict(), force=force)
    work = chunks(cfg.runs, jobs)
    threads = max(1, jobs // len(work))
    store.log(path, f"start: {cfg.runs} runs x {cfg.gens} generations in {len(work)} chunks, jobs={jobs}")
    total = len(work) * (cfg.gens + 1)
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(path, total, done, on_progress), daemon=True) if on_progress else None
    if watcher:
        watcher.start()
    try:
        tasks = (delayed(run_chunk)(cfg, parts, r, path, threads, 1 if jobs > 1 else None) for r in work)
        Parallel(n_jobs=min(jobs, len(work)), backend="loky")(tasks)
    except BaseException as err:
        store.log(path, f"stopped: {type(err).__name__}: {err}")
        raise
    finally:
        done.set()
        if watcher:
            watcher.join()
    store.finish(path, summarize(store.read_table(path)))
    store.log(path, "finished")
    return load(path)


def _watch(path: Path, total: int, done: threading.Event, on_progress) -> None:
    """Report the number of stored (chunk, generation) parts until the run ends."""
    while not done.wait(0.25):
        on_progress(len(list((path / store.PARTS).glob("part-*.parquet"))), total)
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
