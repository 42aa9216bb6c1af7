"""Paired evaluation: several samplers of one trained model, each drawn from the same noise (SIMS's E4-E6).

    ev = madloop.evaluate({"base": {}, "sims": {"algo": "sims", "omega": 0.5, "aux_images": 2048},
                           "auto": {"algo": "autoguidance", "omega": 0.5, "aux_width": 0.5},
                           "cfg": {"lam": 0.7}, "more": {"algo": "continued", "aux_images": 2048}},
                          draws=5, out="runs/e4", data="digits", runs=8)
    ev.table                                   # tidy: run, draw, sampler, metric, value
    ev.summary()                               # per sampler and metric: mean over runs, 95% Student-t CI
    madloop.compare(ev, "base", "sims", "fid")  # sims - base, paired per draw and pooled over the draws

The run keywords are ``madloop.run``'s and set up the *base*: per run, the standard algorithm's model of the
loop's generation T = ``gens`` (1 by default: a model trained on D_r alone), trained once. A sampler is a
training algorithm (``algo`` and its options) and a sampling bias ``lam``: its model is the algorithm's
``combine`` of that base and its ``auxiliary`` model (madloop.algorithms). The auxiliary model (SIMS's fine-tuned
copy, autoguidance's bad model, the continued base) is made once per run and shared by every sampler that differs
only in the options that act when combining (omega, the guidance interval). In draw d, every sampler and the
real-data floor (the sampler ``floor``: n_eval real items of the data source) draw from the streams
(1 + d, eval) and (1 + d, floor): the same noise and labels for every sampler, so a difference between two
samplers is paired run by run and draw by draw, and so is a difference between two evaluations of one seed
(another T, another pollution of the training set: E5). At T = 1, draw 0 of the sampler {} is what the loop
measures at generation 1.

The run directory is a loop's (madloop.store): config.json, its lock, crash-safe parts. Each chunk of runs keeps
its stages in ``parts/`` as they finish (the base, each auxiliary model, each draw's rows), so an evaluation
killed at any point continues with ``madloop resume DIR`` (or ``madloop.resume``) to the same table; a finished
one holds ``table.parquet`` and ``summary.csv``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from madloop import snapshot, store
from madloop.algorithms import auxiliary_needed
from madloop.config import RunConfig, resolve, validate
from madloop.config.resolution import component
from madloop.errors import MadloopError
from madloop.measure import evaluate as measured, nonfinite_runs, reference_sample
from madloop.results import mean_ci
from madloop.rng import Role, Streams

FLOOR = "floor"  # the sampler name of the real-data floor
KEY = "evaluate"  # config.json's config holds this key in an evaluation's run directory
SAMPLER_FIELDS = ("algo", "algo_options", "lam")  # what a sampler may set; the run's settings are the rest
SAMPLES = "samples.npz"  # the kept samples (Plan.keep), in parts/ while running, in grids/ once finished
COLUMNS = {"run": "int64", "draw": "int64", "sampler": "object", "metric": "object", "value": "float64"}


@dataclass(frozen=True)
class Plan:
    """A resolved evaluation: the base's run configuration (standard algorithm, lam = 1), each sampler's
    configuration (the base's, with its own algorithm and lam), and the number of paired draws."""

    config: RunConfig
    samplers: Mapping[str, RunConfig]
    draws: int
    keep: int = 0  # samples of run 0 in draw 0 kept per sampler (for figures: Evaluation.samples)

    def to_dict(self) -> dict[str, Any]:
        samplers = {name: {k: v for k, v in cfg.to_dict().items() if k in SAMPLER_FIELDS}
                    for name, cfg in self.samplers.items()}
        return {"run": self.config.to_dict(), KEY: {"draws": self.draws, "keep": self.keep, "samplers": samplers}}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Plan":
        run = RunConfig.from_dict(raw["run"])
        validate(run)
        given = raw[KEY]["samplers"]
        samplers = {name: RunConfig.from_dict({**raw["run"], **{k: s[k] for k in SAMPLER_FIELDS}})
                    for name, s in given.items()}
        for cfg in samplers.values():
            validate(cfg)
        return cls(run, samplers, raw[KEY]["draws"], raw[KEY].get("keep", 0))

    def algo(self, name: str):
        """Sampler ``name``'s training algorithm, built from its options."""
        cfg = self.samplers[name]
        return component("algo", cfg.algo, cfg.algo_options)


def plan(samplers: Mapping[str, Mapping[str, Any]], draws: int, settings: Mapping[str, Any], keep: int = 0) -> Plan:
    """Check and resolve what ``evaluate`` was given (every check runs here, before anything is written)."""
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
        raise MadloopError(f"keep must be an integer >= 0, got {keep!r}")
    if not isinstance(samplers, Mapping) or not samplers:
        raise MadloopError("samplers must be a non-empty table of name -> settings, e.g. {'base': {}, 'sims': "
                           "{'algo': 'sims', 'omega': 0.5}}")
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise MadloopError(f"draws must be a positive integer, got {draws!r}")
    taken = [key for key in ("algo", "algo_options", "lam") if key in settings]
    if taken:
        raise MadloopError(f"{', '.join(taken)} belong to each sampler, not to the run: put them in samplers")
    # The base: the standard algorithm's model of generation `gens` (default 1), measured on samples.
    base = resolve({"gens": 1, **settings, "algo": "standard", "path": "samples"})
    fixed = {k: v for k, v in base.to_dict().items() if k not in SAMPLER_FIELDS}
    resolved = {}
    for name, given in samplers.items():
        if not isinstance(name, str) or not name or name == FLOOR:
            raise MadloopError(f"a sampler needs a name other than '{FLOOR}' (the real-data floor's), got {name!r}")
        if not isinstance(given, Mapping):
            raise MadloopError(f"sampler '{name}' needs a table of settings (algo, its options, lam), got {given!r}")
        try:
            cfg = resolve({**fixed, **given})
        except MadloopError as err:
            raise MadloopError(f"sampler '{name}': {err}") from None
        changed = [k for k, v in cfg.to_dict().items() if k not in SAMPLER_FIELDS and v != fixed[k]]
        if changed:
            raise MadloopError(f"sampler '{name}' changes the run's {', '.join(changed)}; a sampler sets only algo, "
                               "its options and lam (the run's settings go beside the samplers)")
        resolved[name] = cfg
    if keep > base.n_eval:
        raise MadloopError(f"keep ({keep}) is more than the n_eval = {base.n_eval} samples a draw has")
    return Plan(base, resolved, draws, keep)


def auxiliary_key(cfg: RunConfig, algo) -> str:
    """What an auxiliary model depends on: the algorithm and its options except those that act only when
    combining (``algo.sampling``: omega, the interval). Samplers with one key share one auxiliary model."""
    options = {k: v for k, v in cfg.algo_options.items() if k not in algo.sampling}
    return _digest({"algo": cfg.algo, "options": options})


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=list).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------
# One chunk of runs, in a worker.


def evaluate_chunk(p: Plan, path: Path, runs: range, threads: int, torch_threads: int | None,
                   parent: int | None = None) -> None:
    """Every stage of one chunk of runs not yet on disk: the base, the auxiliary models, each draw's rows.
    The worker holds the chunk's lock throughout (``parent``: the pid of the process that started it)."""
    from madloop.runner import build, orphan_watch, prepare_worker

    with store.chunk_locked(path, runs.start), orphan_watch(parent):
        cfg = p.config
        parts = build(cfg)
        prepare_worker(parts, torch_threads, None)
        spec, streams, t = parts.model, Streams(cfg.seed, runs, cfg.runs), cfg.gens

        def kept(name: str, compute):
            return store.kept(path / store.PARTS / f"stage-r{runs.start:08d}-{name}.npz", compute)

        real, data, base = kept("base", lambda: trained_base(cfg, parts, streams))
        train = streams.at(t, Role.TRAIN)
        models, auxiliaries = {}, {}
        for name in p.samplers:
            algo = p.algo(name)
            aux = None
            if auxiliary_needed(algo):
                key = auxiliary_key(p.samplers[name], algo)
                if key not in auxiliaries:
                    auxiliaries[key] = kept(f"aux-{key}", lambda: algo.auxiliary(  # noqa: B023 (called at once)
                        spec, base, data, train, real, parts.data))
                aux = auxiliaries[key]
            models[name] = algo.combine(spec, base, aux)
        reference = reference_sample(cfg, parts)
        for draw in range(p.draws):
            file = draw_file(path, runs.start, draw)
            if not file.is_file():
                rows, drawn = draw_rows(p, parts, models, streams, reference, runs, draw, threads)
                if draw == 0 and runs.start == 0 and p.keep:  # before the draw's rows: kept whenever they are
                    kept_samples = {name: x[0, : p.keep] for name, (_, x) in drawn.items()}
                    store.atomic_write(path / store.PARTS / SAMPLES, lambda tmp: tmp.write_bytes(
                        snapshot.dumps(kept_samples)))  # noqa: B023
                store.atomic_write(file, lambda tmp: rows.to_parquet(tmp, index=False))  # noqa: B023


def trained_base(cfg: RunConfig, parts, streams: Streams) -> tuple:
    """Each run's D_r, the training set D^T and the standard model G^T trained on it: at T = 1 the loop's
    generation 1 (the same streams) without the S^1 it would draw; later, the loop's generations up to T."""
    from madloop.loop import generations

    real = parts.data.sample(cfg.n_real, streams.at(0, Role.REAL))
    if cfg.gens == 1:
        return real, real, parts.algo.train(parts.model, real, streams.at(1, Role.TRAIN), None)
    *_, last = generations(cfg, parts, streams.runs)
    return last.state.real, last.data, last.model


def draw_rows(p: Plan, parts, models: Mapping[str, Any], streams: Streams, reference, runs: range, draw: int,
              threads: int) -> tuple[pd.DataFrame, dict]:
    """Draw ``draw``: every sampler's n_eval samples from the same streams, and the floor's real sample, measured;
    the rows, and (model, samples) by sampler."""
    cfg, at = p.config, 1 + draw  # whatever T: evaluations of one seed share their draws' noise
    drawn = {FLOOR: (None, parts.data.sample(cfg.n_eval, streams.at(at, Role.FLOOR)).x)}
    for name, model in models.items():
        # A new stream object per sampler: the same noise and labels for each (a stream advances as it draws).
        drawn[name] = (model, model.sample(cfg.n_eval, streams.at(at, Role.EVAL), p.samplers[name].lam).x)
    frames = []
    for name, (model, x) in drawn.items():
        bad = nonfinite_runs(x)  # a guided model that diverged: its runs' values are NaN, never measured
        values = measured(cfg, parts, runs, at, np.where(bad.reshape(-1, *[1] * (x.ndim - 1)), 0, x), model,
                          reference, threads)
        for metric, v in values.items():
            frames.append(pd.DataFrame({"run": np.arange(runs.start, runs.stop), "draw": draw, "sampler": name,
                                        "metric": metric, "value": np.where(bad, np.nan, v)}))
    return pd.concat(frames, ignore_index=True).astype(COLUMNS), drawn


def draw_file(path: Path, chunk: int, draw: int) -> Path:
    return Path(path) / store.PARTS / f"draw-r{chunk:08d}-d{draw:04d}.parquet"


# ----------------------------------------------------------------------------------------------------------
# The run directory.


def evaluate(samplers: Mapping[str, Mapping[str, Any]], *, draws: int = 5, out: str | Path | None = None,
             jobs: int = 1, force: bool = False, keep: int = 0, **settings) -> "Evaluation":
    """Train each run's base once, make each sampler's auxiliary model once, and measure every sampler on
    ``draws`` paired draws (see the module's docstring). ``settings``: ``madloop.run``'s keywords. ``keep``: the
    first ``keep`` samples of run 0 in draw 0 are kept for each sampler (``Evaluation.samples``)."""
    from madloop.runner import _check_jobs, build, check_device, chunks, metric_notes

    _check_jobs(jobs, 0.0)
    p = plan(samplers, draws, settings, keep)
    parts = build(p.config)
    check_device(parts)
    work = chunks(p.config.runs, jobs, group=getattr(parts.model, "run_group", None) or 1)
    path = Path(out) if out is not None else default_out(p.config)
    with store.claimed(path, p.to_dict(), [(r.start, r.stop) for r in work], force=force, notes=metric_notes(parts)):
        return _drive(p, path, jobs, "start")


def default_out(cfg: RunConfig) -> Path:
    base = Path("runs") / f"evaluate-{cfg.model}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def is_evaluation(path: str | Path) -> bool:
    """Whether ``path`` is an evaluation's run directory (not a loop's)."""
    return store.is_run_dir(Path(path)) and KEY in store.read_meta(Path(path))["config"]


def resume(path: str | Path, *, jobs: int = 1) -> "Evaluation":
    """Continue an interrupted evaluation from the stages its chunks kept; a finished one is reopened."""
    from madloop.runner import _check_jobs

    _check_jobs(jobs, 0.0)
    path = Path(path)
    p = Plan.from_dict(store.read_meta(path)["config"])
    with store.locked(path):
        if store.is_finished(path):
            return load(path)
        return _drive(p, path, jobs, "resume")


def _drive(p: Plan, path: Path, jobs: int, verb: str) -> "Evaluation":
    """Run the chunks that have stages to compute, then consolidate (the caller holds the directory's lock)."""
    from madloop.runner import stop_on_sigterm

    work = [range(a, b) for a, b in store.read_meta(path)["chunks"]]
    (path / store.PARTS).mkdir(exist_ok=True)
    store.check_chunks_free(path, [r.start for r in work])
    store.drop_temporaries(path)
    todo = [r for r in work if not all(draw_file(path, r.start, d).is_file() for d in range(p.draws))]
    threads = max(1, jobs // max(len(todo), 1))
    store.log(path, f"{verb}: evaluation of {len(p.samplers)} samplers x {p.draws} draws, {p.config.runs} runs, "
                    f"{len(todo)} of {len(work)} chunks to run, jobs={jobs}")
    try:
        with stop_on_sigterm():
            Parallel(n_jobs=max(1, min(jobs, len(todo))))(
                delayed(evaluate_chunk)(p, path.absolute(), r, threads, threads if jobs > 1 else None, os.getpid())
                for r in todo)
            result = load(path)
            if result.incomplete:
                raise MadloopError(f"{result.incomplete}; `madloop resume {path}` runs what is missing")
            store.atomic_write(path / store.ROWS.file, lambda tmp: result.table.to_parquet(tmp, index=False))
            if p.keep:
                (path / store.GRIDS).mkdir(exist_ok=True)
                os.replace(path / store.PARTS / SAMPLES, path / store.GRIDS / SAMPLES)
            shutil.rmtree(path / store.PARTS, ignore_errors=True)
            store.atomic_write(path / store.SUMMARY, lambda tmp: result.summary().to_csv(tmp, index=False))
    except MadloopError as err:
        store.log(path, f"stopped: {err}")
        raise
    except BaseException as err:
        store.log(path, f"stopped: {type(err).__name__}: {err}; continue with: madloop resume {path}")
        raise
    store.log(path, "finished")
    return result


def load(path: str | Path) -> "Evaluation":
    """Reopen an evaluation's run directory, finished or not (``madloop.load`` does this for one)."""
    path = Path(path)
    p = Plan.from_dict(store.read_meta(path)["config"])
    done = path / store.ROWS.file
    files = [done] if store.is_finished(path) else sorted((path / store.PARTS).glob("draw-r*.parquet"))
    if store.is_finished(path) and not done.is_file():
        raise MadloopError(f"{path} is a finished evaluation without its {store.ROWS.file}; run it again with --force")
    try:
        frames = [pd.read_parquet(f) for f in files]
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise MadloopError(f"a results file in {path} is corrupted or truncated: {err}") from None
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: pd.Series(dtype=t)
                                                                                for c, t in COLUMNS.items()})
    table = table.sort_values(["run", "draw", "sampler", "metric"], kind="stable").reset_index(drop=True)
    chunks, have = store.read_meta(path)["chunks"], set(zip(table.run, table.draw))
    missing = [(a, d) for a, _ in chunks for d in range(p.draws) if (a, d) not in have]
    incomplete = None
    if missing:
        incomplete = (f"{path} is not finished: {len(missing)} of {len(chunks) * p.draws} (chunk, draw) results are "
                      f"missing, the first: runs from {missing[0][0]}, draw {missing[0][1]}")
    return Evaluation(path, p, table, incomplete)


@dataclass
class Evaluation:
    """An evaluation's tidy table (run, draw, sampler, metric, value) and what is read off it."""

    path: Path
    plan: Plan
    table: pd.DataFrame
    incomplete: str | None = None

    @property
    def config(self) -> RunConfig:
        return self.plan.config

    def per_run(self, sampler: str, metric: str) -> pd.DataFrame:
        """The values of one sampler and metric, runs by draws."""
        self._check(sampler, metric)
        rows = self.table[(self.table.sampler == sampler) & (self.table.metric == metric)]
        return rows.pivot(index="run", columns="draw", values="value")

    def summary(self) -> pd.DataFrame:
        """Per sampler and metric: over runs, the mean of each run's mean over draws, its standard error and 95%
        Student-t interval (``n``: runs whose every draw is finite)."""
        rows = []
        for (sampler, metric), g in self.table.groupby(["sampler", "metric"], sort=False):
            per_run = g.groupby("run").value.mean().dropna()
            mean, sem, half = mean_ci(dict(n=per_run.size, s1=per_run.sum(), s2=(per_run**2).sum()))
            rows.append(dict(sampler=sampler, metric=metric, n=per_run.size, draws=g.draw.nunique(), mean=mean,
                             sem=sem, ci_low=mean - half, ci_high=mean + half))
        order = {name: i for i, name in enumerate([FLOOR, *self.plan.samplers])}
        out = pd.DataFrame(rows, columns=["sampler", "metric", "n", "draws", "mean", "sem", "ci_low", "ci_high"])
        return out.sort_values(["sampler", "metric"], key=lambda c: c.map(order) if c.name == "sampler" else c,
                               kind="stable").reset_index(drop=True)

    def compare(self, a: str, b: str, metric: str) -> pd.DataFrame:
        """The paired difference b - a of ``metric`` (same run, same draw: the same base, noise and labels): per
        draw over runs, and pooled (``pooled`` True: each run's mean over draws of b - a), each with its mean,
        standard error and 95% Student-t interval over runs (independent models). Columns: draw, pooled, n, a,
        b, diff, sem, lo, hi. A run not finite in either sampler pairs with nothing."""
        va, vb = self.per_run(a, metric), self.per_run(b, metric)
        diff = vb - va
        rows = []
        for draw, d in [*diff.items(), (None, diff.mean(axis=1, skipna=False))]:
            ok = d.dropna()
            if ok.size < 2:
                raise MadloopError(f"compare needs at least 2 runs finite in both '{a}' and '{b}', got {ok.size}")
            mean, sem, half = mean_ci(dict(n=ok.size, s1=ok.sum(), s2=(ok**2).sum()))
            sa, sb = (va if draw is None else va[[draw]]).loc[ok.index], (vb if draw is None else vb[[draw]]).loc[ok.index]
            rows.append(dict(draw=draw, pooled=draw is None, n=ok.size, a=sa.to_numpy().mean(), b=sb.to_numpy().mean(),
                             diff=mean, sem=sem, lo=mean - half, hi=mean + half))
        out = pd.DataFrame(rows)
        out["draw"] = out["draw"].astype("Int64")
        return out

    def samples(self) -> dict[str, np.ndarray]:
        """The kept samples (``keep``) of run 0 in draw 0, by sampler (the floor's real ones included)."""
        file = self.path / (store.GRIDS if store.is_finished(self.path) else store.PARTS) / SAMPLES
        if not self.plan.keep or not file.is_file():
            raise MadloopError(f"{self.path} keeps no samples (evaluate with keep = N > 0 keeps N of run 0 per sampler)")
        try:
            return snapshot.loads(file.read_bytes())
        except snapshot.SnapshotError as err:
            raise MadloopError(f"{file}: {err}") from None

    def _check(self, sampler: str, metric: str) -> None:
        if sampler not in (FLOOR, *self.plan.samplers):
            raise MadloopError(f"{self.path} has no sampler '{sampler}'; its samplers: "
                               f"{', '.join([FLOOR, *self.plan.samplers])}")
        if metric not in set(self.table.metric):
            raise MadloopError(f"{self.path} has no metric '{metric}'; its metrics: "
                               f"{', '.join(sorted(set(self.table.metric)))}")


def compare(ev: "Evaluation | str | Path", a: str, b: str, metric: str) -> pd.DataFrame:
    """``Evaluation.compare`` of an evaluation or its run directory."""
    return (ev if isinstance(ev, Evaluation) else load(ev)).compare(a, b, metric)
