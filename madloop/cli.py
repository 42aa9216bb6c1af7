"""The ``madloop`` command line. Flags are the RunConfig's names with dashes (``--n-synth``); options
of the chosen data source, model and algorithm are flags too (``--omega 3``, ``--k 8``,
``--cov "2,1;1,2"``). Bad input: one line on stderr, exit code 2, nothing written.

Only what a command needs is imported when it runs: `madloop --help`, `presets` and a Gaussian run
never import torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import types
import typing
import warnings
from pathlib import Path
from typing import Any, List, Optional

import typer
from typer.core import TyperCommand

from madloop import __version__
from madloop.config import COMPONENTS, CORE_FIELDS, PRESETS, RunConfig, option_types, resolve, takes_tuple
from madloop.errors import MadloopError, Stopped
from madloop.registry import MODELS


RESUMABLE = "the run directory keeps what finished; continue with `madloop resume DIR`"


class Interrupted(Exception):
    """Ctrl-C during a run (typer would otherwise swallow the KeyboardInterrupt); ``hint``: how to continue."""

    def __init__(self, hint: str = RESUMABLE):
        super().__init__(hint)
        self.hint = hint


@contextlib.contextmanager
def _working(backend: str, scheduler: str | None, jobs: int):
    """The chosen joblib backend for the work inside; Ctrl-C becomes Interrupted (exit 130)."""
    from madloop import backends

    try:
        with backends.backend(backend, scheduler, jobs):
            yield
    except KeyboardInterrupt:
        raise Interrupted() from None


# --jobs auto. Measured on the shared 2-core machine: two workers cost 6-8 s more than none (each imports
# madloop, pandas and SciPy: 3 s under load), so work that one process finishes within SERIAL_UP_TO_S runs
# here. One run-generation of a closed-form model costs under 1e-6 s on the exact path and about 1e-2 s on the
# samples path with the default metrics (13 s for 50 runs x 21 generations; exact W2 on 250 points dominates).
SECONDS_PER_RUN_GENERATION = {"exact": 1e-6, "samples": 1e-2}
SERIAL_UP_TO_S = 20.0


def auto_jobs(cfg: RunConfig) -> tuple[int, str]:
    """The worker count for ``--jobs auto`` and why: all cores for a neural model (one with a ``device``
    option) or for work that one process needs more than SERIAL_UP_TO_S for, else one."""
    cores = os.cpu_count() or 1
    if "device" in option_types(MODELS[cfg.model]):
        # The unet computes groups of runs_per_pass runs on one thread each: more workers than groups would idle.
        group = cfg.model_options.get("runs_per_pass") or 0
        workers = min(cores, -(-cfg.runs // group)) if group else cores
        return workers, f"{cfg.model} is a neural model" + (f"; its {cfg.runs} runs form {workers} group(s) of "
                                                               f"runs_per_pass = {group}" if workers < cores else "")
    seconds = cfg.runs * cfg.eval_count() * SECONDS_PER_RUN_GENERATION[cfg.path]
    if seconds > SERIAL_UP_TO_S:
        return cores, f"about {seconds:.0f} s of work in one process"
    return 1, f"about {seconds:.2g} s of work: less than starting workers costs"


def parse_jobs(text: str, configs: list[RunConfig]) -> tuple[int, str]:
    """--jobs: a positive number, or auto (the most that any of ``configs`` asks for)."""
    if text == "auto":
        return max(auto_jobs(cfg) for cfg in configs) if configs else (os.cpu_count() or 1, "all cores")
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise MadloopError(f"--jobs must be a positive integer or auto, got '{text}'")
    return jobs, "as given"


def _seconds(value: float) -> float:
    if math.isnan(value) or value < 0:
        raise typer.BadParameter(f"must be a number of seconds >= 0, got {value}")
    return value


# Options that run, resume and sweep share.
JOBS = typer.Option("auto", metavar="INTEGER|auto",
                    help="worker processes; auto: one for small work of a closed-form model, all cores for neural "
                         "models and large work (printed; results do not depend on it)")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="show a progress bar")
PLOT = typer.Option(True, "--plot/--no-plot", help="write the summary figure into the run directory")
BACKEND = typer.Option("loky", metavar="NAME", help="loky (this machine) | dask | ray")
SCHEDULER = typer.Option(None, metavar="ADDRESS", help="dask scheduler address tcp://HOST:PORT (default: a local cluster)")
CHECKPOINT_S = typer.Option(30.0, metavar="SECONDS", callback=_seconds,
                            help="seconds between checkpoints that `madloop resume` continues from (0: every generation)")
WINDOW = typer.Option(None, metavar="GENERATIONS", min=1,
                      help="the convergence ratio averages generations t >= this  [default: 20]")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"madloop {__version__}")
        raise typer.Exit()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Simulate self-consuming generative-model loops (MAD) and their remedies.")


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and stop")):
    pass


def parse_value(text: str) -> Any:
    """A flag's value: JSON when it parses ("3", "true", "[1, 2]"), "a,b" a tuple, "a,b;c,d" a matrix."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return float(text)  # as typer reads --lam nan: the checks then say "must be a finite number"
    if ";" in text:
        return tuple(parse_value(row) if "," in row else (parse_value(row),) for row in text.split(";"))
    if "," in text:
        return tuple(parse_value(x.strip()) for x in text.split(",") if x.strip())
    return text


def parse_extra(args: list[str]) -> dict[str, Any]:
    """``--name value`` / ``--name=value`` / ``--flag`` pairs that are not core flags."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or len(token) < 3:
            raise MadloopError(f"unexpected argument '{token}'")
        name, _, value = token[2:].partition("=")
        if not _ and (i + 1 >= len(args) or args[i + 1].startswith("--")):
            value = "true"
        elif not _:
            i += 1
            value = args[i]
        key, parsed = name.replace("-", "_"), parse_value(value)
        # A single value for a list option (--attention 8, --mults 2) is a list of one.
        out[key] = (parsed,) if takes_tuple(key) and not isinstance(parsed, (tuple, list)) else parsed
        i += 1
    return out


def _metavar(hint: Any) -> str:
    """A component option's placeholder, as a word."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    t = next(a for a in (typing.get_args(hint) if union else (hint,)) if a is not type(None))
    if typing.get_origin(t) is tuple:
        return "MATRIX" if typing.get_origin(typing.get_args(t)[0]) is tuple else "NUMBERS"
    return {bool: "[true|false]", int: "INTEGER", float: "NUMBER"}.get(t, "TEXT")


def _shown(value: Any) -> str:
    """A default written as its flag takes it: 0.0,0.0 for numbers, 2,1;1,2 for a matrix, true, none."""
    if isinstance(value, tuple):
        matrix = bool(value) and isinstance(value[0], tuple)
        return ";".join(map(_shown, value)) if matrix else ",".join(map(str, value))
    if value is None or isinstance(value, bool):
        return str(value).lower()
    return "(required)" if value == "" else str(value)


def _component_options(formatter) -> None:
    """Every data source's, model's and algorithm's options as flags, with their defaults."""
    formatter.write_paragraph()
    formatter.write_text("Options of the data sources, models and algorithms are flags too. NUMBERS: comma-separated "
                         "(--mean 0,1); MATRIX: rows separated by ';' (--cov \"2,1;1,2\"). Where two chosen components "
                         "share a name, write data.k or model.k.")
    for kind, registry in COMPONENTS.items():
        for name in registry.names():
            cls = registry[name]
            defaults = {f.name: f.default for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
            rows = [(f"--{option.replace('_', '-')} {_metavar(hint)}", f"[default: {_shown(defaults.get(option))}]")
                    for option, hint in option_types(cls).items()]
            with formatter.section(f"--{kind} {name}"):
                if rows:
                    formatter.write_dl(rows)
                else:
                    formatter.write_text("(no options)")


class Command(TyperCommand):
    """Help whose placeholders are words: an argument shows its metavar alone (typer would add "<path>")."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [self.options_metavar, *(_argument(p) for p in self.get_params(ctx) if p.param_type_name == "argument")]

    def format_options(self, ctx, formatter) -> None:
        arguments = [(_argument(p), p.help or "") for p in self.get_params(ctx) if p.param_type_name == "argument"]
        options = [p.get_help_record(ctx) for p in self.get_params(ctx) if p.param_type_name == "option"]
        for title, rows in (("Arguments", arguments), ("Options", [row for row in options if row])):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument(param) -> str:
    return param.metavar if param.required else f"[{param.metavar}]"


class RunHelp(Command):
    """`run --help` ends with the options of every data source, model and algorithm."""

    def format_epilog(self, ctx, formatter) -> None:
        _component_options(formatter)


class SweepHelp(Command):
    """`sweep --help` lists the run command's settings, then every component's options."""

    def format_epilog(self, ctx, formatter) -> None:
        run_command = ctx.parent.command.get_command(ctx.parent, "run")
        rows = [p.get_help_record(ctx) for p in run_command.params if p.name in CORE_FIELDS]
        with formatter.section("Settings (as for madloop run; comma-separated values make an axis)"):
            formatter.write_dl([row for row in rows if row])
        _component_options(formatter)


@app.command(cls=RunHelp, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    loop: Optional[str] = typer.Option(None, metavar="NAME", help="fully_synthetic | augmentation | fresh"),
    data: Optional[str] = typer.Option(None, metavar="NAME", help="real-data source: gaussian | mixture | file"),
    model: Optional[str] = typer.Option(None, metavar="NAME",
                                        help="model family: gaussian | gmm | ddpm | edm | flow | gan"),
    algo: Optional[str] = typer.Option(None, metavar="NAME", help="training algorithm: standard | sims"),
    n_real: Optional[int] = typer.Option(None, metavar="INTEGER", help="real points per generation (|D_r|)"),
    n_synth: Optional[int] = typer.Option(None, metavar="INTEGER", help="synthetic points per generation (|S^t|)"),
    accumulate: Optional[bool] = typer.Option(None, "--accumulate/--replace", help="keep all past synthetic sets"),
    budget: Optional[int] = typer.Option(None, metavar="INTEGER", help="subsample accumulated synthetic data to this size"),
    lam: Optional[float] = typer.Option(None, metavar="NUMBER", help="sampling bias lambda in (0, 1]; 1 = unbiased"),
    real_weight: Optional[float] = typer.Option(None, metavar="NUMBER",
                                                help="share w in [0, 1] of the training objective on real data "
                                                     "(augmentation, fresh; default: the count share)"),
    curate: Optional[str] = typer.Option(None, metavar="NAME",
                                         help="keep the synthetic samples a verifier accepts: oracle | quantile"),
    curate_strength: Optional[float] = typer.Option(None, metavar="NUMBER",
                                                    help="oracle: exponent s in [0, 1] (default 1); quantile: q in "
                                                         "[0, 0.95] (default 0.5)"),
    correct: Optional[float] = typer.Option(None, metavar="NUMBER",
                                            help="self-correction: Langevin time on log p_r per synthetic sample"),
    correct_steps: Optional[int] = typer.Option(None, metavar="INTEGER", help="Langevin steps of the correction"),
    gens: Optional[int] = typer.Option(None, metavar="INTEGER", help="generations T"),
    runs: Optional[int] = typer.Option(None, metavar="INTEGER", help="Monte-Carlo runs R"),
    seed: Optional[int] = typer.Option(None, metavar="INTEGER", help="root of every random stream"),
    metrics: Optional[str] = typer.Option(None, metavar="NAMES", help="comma-separated metric names"),
    every: Optional[int] = typer.Option(None, metavar="INTEGER", help="compute metrics every k generations"),
    n_eval: Optional[int] = typer.Option(None, metavar="INTEGER", help="generated points per run that metrics use"),
    n_ref: Optional[int] = typer.Option(None, metavar="INTEGER", help="real reference points, shared by all runs"),
    path: Optional[str] = typer.Option(None, metavar="NAME",
                                       help="auto | exact (draw a Gaussian fit's statistics, no samples) | samples"),
    store_runs: Optional[int] = typer.Option(None, metavar="INTEGER",
                                             help="keep per-run rows for this many runs (summaries cover all)"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="a .toml or .json config file"),
    preset: Optional[str] = typer.Option(None, metavar="NAME", help="a named preset (see `madloop presets`)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config (TOML) and stop"),
    jobs: str = JOBS,
    out: Optional[Path] = typer.Option(None, metavar="DIR", help="run directory (default runs/LOOP-MODEL-ALGO-TIME)"),
    force: bool = typer.Option(False, "--force", help="replace a run already in --out"),
    progress: bool = PROGRESS,
    plot: bool = PLOT,
    backend: str = BACKEND,
    scheduler: Optional[str] = SCHEDULER,
    checkpoint_s: float = CHECKPOINT_S,
    window: Optional[int] = WINDOW,
):
    """Run a self-consuming loop and store its tidy table, summary and figure."""
    start = time.perf_counter()
    given = {k: v for k, v in dict(loop=loop, data=data, model=model, algo=algo, n_real=n_real, n_synth=n_synth,
                                   accumulate=accumulate, budget=budget, lam=lam, real_weight=real_weight,
                                   curate=curate, curate_strength=curate_strength, correct=correct,
                                   correct_steps=correct_steps, gens=gens, runs=runs, seed=seed,
                                   every=every, n_eval=n_eval, n_ref=n_ref, path=path,
                                   store_runs=store_runs).items() if v is not None}
    if metrics is not None:
        given["metrics"] = tuple(m.strip() for m in metrics.split(",") if m.strip())
    given.update(parse_extra(ctx.args))
    cfg = resolve(given, preset=preset, config_file=config)
    if dry_run:
        typer.echo(cfg.to_toml(), nl=False)
        return
    from madloop.runner import execute

    workers, why = parse_jobs(jobs, [cfg])
    with _working(backend, scheduler, workers):
        typer.echo(f"madloop: {cfg.loop} loop, {cfg.model} model, {cfg.algo} training; {cfg.runs} runs x {cfg.gens} "
                   f"generations, jobs={workers} ({why})", err=True)
        result = _with_progress(cfg, progress, lambda update: execute(cfg, out=out, jobs=workers, force=force,
                                                                      on_progress=update, checkpoint_s=checkpoint_s))
    _report(result, plot, window, start)


def _report(result, plot: bool, window: int | None, start: float) -> None:
    """Where the results went, the figure, the time it all took, and the headline numbers."""
    from madloop.plots import plot_runs

    ran = time.perf_counter() - start
    typer.echo(f"results: {result.path}  (table.parquet, summary.csv, log.txt)")
    try:
        figures = plot_runs([result], result.path / "figures") if plot else []
    except MadloopError as err:
        raise MadloopError(f"the results are in {result.path}, but {err}") from None
    for f in figures:
        typer.echo(f"figure:  {f}")
    train_s, eval_s = result.timing()
    total = time.perf_counter() - start
    chunks = "chunks of stored runs" if result.config.runs > result.config.store_runs else "chunks"
    typer.echo(f"time:    {total:.1f} s = {ran:.1f} s run + {total - ran:.1f} s figure; the loop, summed over {chunks}: "
               f"{train_s:.1f} s training and sampling + {eval_s:.1f} s metrics "
               f"({100 * eval_s / max(train_s + eval_s, 1e-9):.0f}%)")
    typer.echo(headline_text(result, window))


def headline_text(result, window: int | None) -> str:
    """The headline table, then a line for each empty column saying why it is empty."""
    from madloop.results import CONVERGENCE_START, MIN_RUNS, no_ratio

    headline = result.headline(window)
    parts = [m for m in headline.metric if m not in result.config.metrics]  # classes_3 ...: in the table, not here
    headline = headline[~headline.metric.isin(parts)]
    lines = [headline.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")]
    reasons = {row.metric: no_ratio(row.metric, row.floor, row.first) for row in headline.itertuples()}
    others = [m for m, why in reasons.items() if why is not None]
    for why in dict.fromkeys(why for why in reasons.values() if why is not None):
        lines.append(f"{', '.join(m for m in others if reasons[m] == why)}: {why}, so no MAD or convergence ratio")
    window = window or CONVERGENCE_START
    if result.config.gens < window and len(others) < len(headline):
        lines.append(f"convergence ratio: empty, because it averages generations t >= {window} and this run has "
                     f"{result.config.gens} (--window sets where it starts)")
    if result.config.runs < MIN_RUNS and len(others) < len(headline):
        lines.append(f"ratio intervals (_low, _high): empty, because a bootstrap over {result.config.runs} runs covers "
                     f"well under 95%; they need at least {MIN_RUNS} runs")
    return "\n".join(lines)


def _with_progress(cfg, progress: bool, work):
    """Call ``work(on_progress)`` under a progress bar of generations finished (all chunks) and, for models
    with a training budget in images (unet), the training images per second across all workers."""
    if not progress:
        return work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from madloop.runner import training_rate

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"{cfg.runs} runs: generations done", total=cfg.gens + 1, rate="")
        clock, start = time.perf_counter(), None

        def update(done: int, total: int) -> None:
            nonlocal start
            if start is None:
                start = done  # parts already stored when the bar started (a resume)
            # Parts are (chunk, generation) files: report generations finished by every chunk.
            rate = training_rate(cfg, done, total, start, time.perf_counter() - clock)
            bar.update(task, completed=done * (cfg.gens + 1) // max(total, 1),
                       rate="" if rate is None else f"{rate:,.0f} training images/s")

        return work(update)


@app.command(cls=Command)
def resume(
    run_dir: Path = typer.Argument(..., metavar="DIR", help="an interrupted run or sweep directory"),
    jobs: str = JOBS,
    progress: bool = PROGRESS,
    plot: bool = PLOT,
    backend: str = BACKEND,
    scheduler: Optional[str] = SCHEDULER,
    checkpoint_s: float = CHECKPOINT_S,
    window: Optional[int] = WINDOW,
    gens: Optional[int] = typer.Option(None, metavar="INTEGER", help="run a run directory on to this many generations "
                                       "(finished or not); its table ends as a run of that many from the start would"),
):
    """Continue an interrupted run (or sweep) from its last checkpoints; the table ends as if never stopped."""
    import madloop
    from madloop import store
    from madloop.evaluate import Evaluation
    from madloop.results import Result
    from madloop.sweeps import SWEEP, SweepResult

    start = time.perf_counter()
    if not (store.is_run_dir(run_dir) or (run_dir / SWEEP).is_file()):
        raise MadloopError(f"{run_dir} is not a madloop run or sweep directory")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not finished (madloop resume completes it)": that is what this does
        opened = madloop.load(run_dir)
    configs = [r.config for r in opened.results] if isinstance(opened, SweepResult) else [opened.config]
    if gens is not None and not isinstance(opened, Result):
        raise MadloopError(f"--gens runs a loop's run directory on to more generations; {run_dir} is a "
                           f"{'sweep' if isinstance(opened, SweepResult) else 'evaluation'}")
    workers, _ = parse_jobs(jobs, configs)
    if isinstance(opened, Evaluation):
        with _working(backend, scheduler, workers):
            result = madloop.resume(run_dir, jobs=workers)
        typer.echo(f"table: {run_dir / 'table.parquet'}; summary: {run_dir / 'summary.csv'}")
        return
    with _working(backend, scheduler, workers):
        if isinstance(opened, SweepResult):
            result = madloop.resume(run_dir, jobs=workers, checkpoint_s=checkpoint_s)
            result.summary().to_csv(run_dir / "summary.csv", index=False)
            typer.echo(f"{len(result.points)} runs in {run_dir}; summary: {run_dir / 'summary.csv'}")
            return
        shown = opened.config if gens is None else dataclasses.replace(opened.config, gens=max(gens, 1))
        result = _with_progress(shown, progress, lambda update: madloop.resume(
            run_dir, jobs=workers, on_progress=update, checkpoint_s=checkpoint_s, gens=gens))
    _report(result, plot, window, start)


@app.command(cls=Command)
def plot(
    run_dirs: List[Path] = typer.Argument(..., metavar="RUN_DIR...", help="run directories or sweep folders to overlay"),
    out: Path = typer.Option(Path("figures"), metavar="DIR", help="folder for the PNG and PDF"),
    name: str = typer.Option("summary", metavar="NAME", help="file name without extension"),
    labels: Optional[str] = typer.Option(None, metavar="LABELS", help="comma-separated legend labels, one per run"),
    metrics: Optional[str] = typer.Option(None, metavar="NAMES", help="comma-separated metrics to show (default: all shared)"),
    logy: bool = typer.Option(False, "--logy", help="log-scale y axes (for quantities that stay positive)"),
):
    """Metric and MAD ratio vs generation, with 95% CI bands, for one or more runs."""
    from madloop.plots import plot as plot_figure

    label_list = [s.strip() for s in labels.split(",")] if labels else None
    metric_list = [m.strip() for m in metrics.split(",")] if metrics else None
    for p in plot_figure(*run_dirs, out=out, labels=label_list, metrics=metric_list, name=name, logy=logy):
        typer.echo(str(p))


@app.command(cls=Command)
def grid(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="an image loop's run directory"),
    gens: Optional[str] = typer.Option(None, metavar="LIST", help="comma-separated generations (0 = real images); "
                                       "default: up to five, evenly spaced"),
    runs: str = typer.Option("0", metavar="LIST", help="comma-separated runs, a row each (grids are kept for runs 0-3)"),
    out: Optional[Path] = typer.Option(None, metavar="DIR", help="folder for grid.png and grid.pdf (default: RUN/figures)"),
    name: str = typer.Option("grid", metavar="NAME", help="file name without extension"),
):
    """Sample grids of an image loop side by side: the same noise and labels at every generation."""
    from madloop.plots import grid_figure

    def numbers(text: str, what: str) -> list[int]:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise MadloopError(f"--{what} must be comma-separated integers, got '{text}'") from None

    for p in grid_figure(run_dir, numbers(gens, "gens") if gens else None, numbers(runs, "runs"), out, name):
        typer.echo(str(p))


@app.command(cls=Command)
def study(
    name: Optional[str] = typer.Argument(None, metavar="NAME", help="the study to run; leave out to list them"),
    scale: str = typer.Option("cpu", metavar="NAME", help="ci (tiny) | cpu (the committed figures) | gpu (the paper's size)"),
    out: Path = typer.Option(Path("figures"), metavar="DIR", help="folder for the table and figures"),
    jobs: str = typer.Option("auto", metavar="INTEGER|auto", help="worker processes; auto: all cores"),
    work: Optional[Path] = typer.Option(None, metavar="DIR", help="keep the study's runs in DIR (default: a scratch "
                                        "folder, removed afterwards); run again with the same DIR to continue an "
                                        "interrupted study: finished runs are kept, interrupted ones resume"),
):
    """List the studies, or run one: its tidy table and figures go to --out."""
    from madloop.studies import STUDIES, load_all, run_study

    if name is None:
        load_all()
        for n in STUDIES.names():
            typer.echo(f"{n}: {STUDIES[n].description}")
        return
    # A study's runs live in --work, or in a scratch folder that is gone once it stops: `madloop resume` has no DIR.
    hint = (f"the runs that finished are kept in {work}; continue with `madloop study {name} --scale {scale} --work {work}`"
            if work is not None else "the study's runs were in a scratch folder, now removed; run it again with "
            "--work DIR to keep what finishes, so that a second stop loses nothing")
    try:
        paths = run_study(name, scale, out, parse_jobs(jobs, [])[0], work)
    except KeyboardInterrupt:
        raise Interrupted(hint) from None
    except Stopped as stop:
        stop.hint = hint
        raise
    for p in paths:
        typer.echo(str(p))


@app.command(cls=SweepHelp, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep(
    ctx: typer.Context,
    out: Path = typer.Option(..., metavar="DIR", help="folder for the sweep (one run directory per point)"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="common settings (.toml or .json)"),
    preset: Optional[str] = typer.Option(None, metavar="NAME", help="a named preset for the common settings"),
    jobs: str = JOBS,
    force: bool = typer.Option(False, "--force", help="replace runs already in --out"),
    backend: str = BACKEND,
    scheduler: Optional[str] = SCHEDULER,
    checkpoint_s: float = CHECKPOINT_S,
):
    """Run a grid: any run flag with comma-separated values is an axis (--omega 0,1,2 --n-synth 125,250)."""
    from madloop.sweeps import grid
    from madloop.sweeps import sweep as run_sweep

    settings = parse_extra(ctx.args)
    axes = {k: list(v) for k, v in settings.items() if isinstance(v, tuple) and not takes_tuple(k)}
    common = {k: v for k, v in settings.items() if k not in axes}
    if not axes:
        raise MadloopError("a sweep needs at least one axis: a flag with comma-separated values, e.g. --lam 1,0.7,0.5")
    workers, why = parse_jobs(jobs, [resolve({**common, **p}, preset=preset, config_file=config) for p in grid(axes)])
    with _working(backend, scheduler, workers):
        typer.echo(f"madloop: a sweep of {len(grid(axes))} runs, jobs={workers} ({why})", err=True)
        result = run_sweep(axes, out=out, jobs=workers, force=force, preset=preset, config_file=config,
                           checkpoint_s=checkpoint_s, **common)
    path = out / "summary.csv"
    result.summary().to_csv(path, index=False)
    typer.echo(f"{len(result.points)} runs in {out}; summary: {path}")


@app.command(cls=Command, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def evaluate(
    ctx: typer.Context,
    config: Path = typer.Option(..., "--config", metavar="FILE",
                                help="a .toml or .json file: [samplers.NAME] tables (algo, its options, lam), "
                                     "[run] (madloop run's settings), draws"),
    draws: Optional[int] = typer.Option(None, metavar="INTEGER", help="paired draws per run (default: the file's, or 5)"),
    out: Optional[Path] = typer.Option(None, metavar="DIR", help="run directory (default runs/evaluate-MODEL-TIME)"),
    jobs: str = JOBS,
    force: bool = typer.Option(False, "--force", help="replace a run already in --out"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved samplers and run (JSON) and stop"),
):
    """Measure samplers of one trained base on paired draws (madloop.evaluate); run flags override [run]."""
    from madloop import store
    from madloop.config.schema import read_config_file
    from madloop.evaluate import evaluate as run_evaluation
    from madloop.evaluate import plan

    raw = read_config_file(config)
    unknown = set(raw) - {"run", "samplers", "draws"}
    if unknown:
        raise MadloopError(f"config file {config} has unknown keys {', '.join(sorted(unknown))}; it holds samplers, "
                           "run and draws")
    settings = {**raw.get("run", {}), **parse_extra(ctx.args)}
    samplers, n = raw.get("samplers", {}), draws if draws is not None else raw.get("draws", 5)
    resolved = plan(samplers, n, settings)
    if dry_run:
        typer.echo(json.dumps(resolved.to_dict(), indent=2))
        return
    if out is not None:
        store.check_target(out, force)  # before the first line printed: a refusal is the only line
    workers, why = parse_jobs(jobs, [resolved.config])
    typer.echo(f"madloop: {len(samplers)} samplers x {n} draws on {resolved.config.runs} runs, jobs={workers} ({why})",
               err=True)
    result = run_evaluation(samplers, draws=n, out=out, jobs=workers, force=force, **settings)
    summary = result.summary()
    shown = summary[~summary.metric.str.fullmatch(r".+_\d+")]  # per-class shares stay in the file
    typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    typer.echo(f"table: {result.path / 'table.parquet'}; summary: {result.path / 'summary.csv'}")


@app.command(cls=Command)
def presets():
    """List the named presets and what each sets."""
    for name, settings in PRESETS.items():
        typer.echo(f"{name}: {json.dumps(settings) if settings else '(the defaults)'}")


def _usage_errors() -> tuple[type[Exception], ...]:
    """Bad flags as raised by typer (which now ships its own click) or by click itself."""
    errors = [getattr(typer, "TyperException", None)]
    try:
        import click

        errors.append(click.ClickException)
    except ImportError:
        pass
    return tuple(e for e in errors if e is not None)


def main() -> None:
    """Entry point: one line for every user error, exit code 2."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files: no window, whatever the machine has
    try:
        code = app(standalone_mode=False)
    except MadloopError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except (Interrupted, typer.Abort, KeyboardInterrupt) as err:
        typer.echo(f"interrupted: {getattr(err, 'hint', RESUMABLE)}", err=True)
        sys.exit(130)
    except Stopped as stop:  # SIGTERM: a scheduler's preemption
        typer.echo(f"stopped by signal {stop.signum}: {getattr(stop, 'hint', RESUMABLE)}", err=True)
        sys.exit(128 + stop.signum)
    except _usage_errors() as err:
        typer.echo(f"error: {getattr(err, 'format_message', err.__str__)()}", err=True)
        sys.exit(2)
    except OSError as err:  # a file system's refusal that no layer above named; writes are atomic, so nothing is half-written
        typer.echo(f"error: {err.strerror or err}" + (f": {err.filename}" if err.filename else ""), err=True)
        sys.exit(2)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
