"""The ``madloop`` command line. Flags are the RunConfig's names with dashes (``--n-synth``); options
of the chosen data source, model and algorithm are flags too (``--omega 3``, ``--k 8``,
``--cov "2,1;1,2"``). Bad input: one line on stderr, exit code 2, nothing written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from madloop import backends
from madloop.config import COMPONENTS, PRESETS, _option_types, resolve, takes_tuple
from madloop.errors import MadloopError

class Interrupted(Exception):
    """Ctrl-C during a run (typer would otherwise swallow the KeyboardInterrupt)."""


@contextlib.contextmanager
def _working(backend: str, scheduler: str | None, jobs: int):
    """The chosen joblib backend for the work inside; Ctrl-C becomes Interrupted (exit 130)."""
    try:
        with backends.backend(backend, scheduler, jobs):
            yield
    except KeyboardInterrupt:
        raise Interrupted() from None


# Options that run, resume and sweep share.
JOBS = typer.Option(os.cpu_count() or 1, help="parallel workers (results do not depend on it)")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="show a progress bar")
PLOT = typer.Option(True, "--plot/--no-plot", help="write the summary figure into the run directory")
BACKEND = typer.Option("loky", help="loky (this machine) | dask | ray")
SCHEDULER = typer.Option(None, help="dask scheduler address tcp://HOST:PORT (default: a local cluster)")
CHECKPOINT_S = typer.Option(30.0, help="seconds between checkpoints that `madloop resume` continues from")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Simulate self-consuming generative-model loops (MAD) and their remedies.")


def parse_value(text: str) -> Any:
    """A flag's value: JSON when it parses ("3", "true", "[1, 2]"), "a,b" a tuple, "a,b;c,d" a matrix."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
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
        out[name.replace("-", "_")] = parse_value(value)
        i += 1
    return out


def _options_help() -> str:
    lines = ["Options of data sources, models and algorithms (give them as flags, e.g. --omega 3):"]
    for kind, registry in COMPONENTS.items():
        for name in registry.names():
            fields = ", ".join(_option_types(registry[name]))
            lines.append(f"  {kind} {name}: {fields or '(none)'}")
    return "\n\n".join(lines)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, epilog=_options_help())
def run(
    ctx: typer.Context,
    loop: Optional[str] = typer.Option(None, help="fully_synthetic | augmentation | fresh"),
    data: Optional[str] = typer.Option(None, help="real-data source: gaussian | mixture | file"),
    model: Optional[str] = typer.Option(None, help="model family: gaussian | gmm | ..."),
    algo: Optional[str] = typer.Option(None, help="training algorithm: standard | ..."),
    n_real: Optional[int] = typer.Option(None, help="real points per generation (|D_r|)"),
    n_synth: Optional[int] = typer.Option(None, help="synthetic points per generation (|S^t|)"),
    accumulate: Optional[bool] = typer.Option(None, "--accumulate/--replace", help="keep all past synthetic sets"),
    budget: Optional[int] = typer.Option(None, help="subsample accumulated synthetic data to this size"),
    lam: Optional[float] = typer.Option(None, help="sampling bias lambda in (0, 1]; 1 = unbiased"),
    gens: Optional[int] = typer.Option(None, help="generations T"),
    runs: Optional[int] = typer.Option(None, help="Monte-Carlo runs R"),
    seed: Optional[int] = typer.Option(None, help="root of every random stream"),
    metrics: Optional[str] = typer.Option(None, help="comma-separated metric names"),
    every: Optional[int] = typer.Option(None, help="compute metrics every k generations"),
    n_eval: Optional[int] = typer.Option(None, help="generated points per run that metrics use"),
    n_ref: Optional[int] = typer.Option(None, help="real reference points, shared by all runs"),
    config: Optional[Path] = typer.Option(None, "--config", help="a .toml or .json config file"),
    preset: Optional[str] = typer.Option(None, help="a named preset (see `madloop presets`)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config (TOML) and stop"),
    jobs: int = JOBS,
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/<loop>-<model>-<algo>-<time>)"),
    force: bool = typer.Option(False, "--force", help="replace a run already in --out"),
    progress: bool = PROGRESS,
    plot: bool = PLOT,
    backend: str = BACKEND,
    scheduler: Optional[str] = SCHEDULER,
    checkpoint_s: float = CHECKPOINT_S,
):
    """Run a self-consuming loop and store its tidy table, summary and figure."""
    from madloop.runner import execute

    given = {k: v for k, v in dict(loop=loop, data=data, model=model, algo=algo, n_real=n_real, n_synth=n_synth,
                                   accumulate=accumulate, budget=budget, lam=lam, gens=gens, runs=runs, seed=seed,
                                   every=every, n_eval=n_eval, n_ref=n_ref).items() if v is not None}
    if metrics is not None:
        given["metrics"] = tuple(m.strip() for m in metrics.split(",") if m.strip())
    given.update(parse_extra(ctx.args))
    cfg = resolve(given, preset=preset, config_file=config)
    if dry_run:
        typer.echo(cfg.to_toml(), nl=False)
        return
    typer.echo(f"madloop: {cfg.loop} loop, {cfg.model} model, {cfg.algo} training; {cfg.runs} runs x {cfg.gens} generations, jobs={jobs}", err=True)
    with _working(backend, scheduler, jobs):
        result = _with_progress(cfg, progress, lambda update: execute(cfg, out=out, jobs=jobs, force=force, on_progress=update,
                                                                      checkpoint_s=checkpoint_s))
    _report(result, plot)


def _report(result, plot: bool) -> None:
    from madloop.plots import headline_text, plot_runs

    figures = plot_runs([result], result.path / "figures") if plot else []
    typer.echo(f"results: {result.path}  (table.parquet, summary.csv, log.txt)")
    for f in figures:
        typer.echo(f"figure:  {f}")
    train_s, eval_s = result.timing()
    typer.echo(f"time:    {train_s + eval_s:.1f} s in the loop, of which metrics {eval_s:.1f} s "
               f"({100 * eval_s / max(train_s + eval_s, 1e-9):.0f}%), summed over chunks (stored runs' chunks)")
    typer.echo(headline_text(result.headline()))


def _with_progress(cfg, progress: bool, work):
    """Call ``work(on_progress)`` under a progress bar of generations finished (all chunks)."""
    if not progress:
        return work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"{cfg.runs} runs: generations done", total=cfg.gens + 1)

        def update(done: int, total: int) -> None:
            # Parts are (chunk, generation) files: report generations finished by every chunk.
            bar.update(task, completed=done * (cfg.gens + 1) // max(total, 1))

        return work(update)


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="an interrupted run or sweep directory"),
    jobs: int = JOBS,
    progress: bool = PROGRESS,
    plot: bool = PLOT,
    backend: str = BACKEND,
    scheduler: Optional[str] = SCHEDULER,
    checkpoint_s: float = CHECKPOINT_S,
):
    """Continue an interrupted run (or sweep) from its last checkpoints; the table ends as if never stopped."""
    from madloop import store
    from madloop.results import load
    from madloop.runner import resume as resume_run
    from madloop.sweep import SWEEP, resume_sweep

    with _working(backend, scheduler, jobs):
        if (run_dir / SWEEP).is_file():
            result = resume_sweep(run_dir, jobs=jobs, checkpoint_s=checkpoint_s)
            result.summary().to_csv(run_dir / "summary.csv", index=False)
            typer.echo(f"{len(result.points)} runs in {run_dir}; summary: {run_dir / 'summary.csv'}")
            return
        cfg = load(run_dir).config if store.is_run_dir(run_dir) else None
        if cfg is None:
            raise MadloopError(f"{run_dir} is not a madloop run or sweep directory")
        result = _with_progress(cfg, progress, lambda update: resume_run(run_dir, jobs=jobs, on_progress=update,
                                                                         checkpoint_s=checkpoint_s))
    _report(result, plot)


@app.command()
def plot(
    run_dirs: List[Path] = typer.Argument(..., help="run directories to overlay"),
    out: Path = typer.Option(Path("figures"), help="folder for the PNG and PDF"),
    name: str = typer.Option("summary", help="file name without extension"),
    labels: Optional[str] = typer.Option(None, help="comma-separated legend labels, one per run"),
    metrics: Optional[str] = typer.Option(None, help="comma-separated metrics to show (default: all shared)"),
):
    """Metric and MAD ratio vs generation, with 95% CI bands, for one or more runs."""
    from madloop.plots import plot_runs
    from madloop.results import load

    from madloop.sweep import SWEEP, load_sweep

    results, sweep_labels = [], []
    for p in run_dirs:  # a sweep folder stands for all its points, labelled by their swept settings
        if (p / SWEEP).is_file():
            sw = load_sweep(p)
            results += sw.results
            sweep_labels += [", ".join(f"{k}={v}" for k, v in point.items()) for point in sw.points]
        else:
            results.append(load(p))
            sweep_labels.append(p.name)
    label_list = [s.strip() for s in labels.split(",")] if labels else (sweep_labels if len(results) > 1 else None)
    if label_list is not None and len(label_list) != len(results):
        raise MadloopError(f"--labels gives {len(label_list)} labels for {len(results)} runs")
    metric_list = [m.strip() for m in metrics.split(",")] if metrics else None
    for r in results:
        missing = set(metric_list or []) - set(r.table.metric)
        if missing:
            raise MadloopError(f"{r.path} has no metric {', '.join(sorted(missing))}; it has {', '.join(sorted(set(r.table.metric)))}")
    for p in plot_runs(results, out, label_list, metric_list, name):
        typer.echo(str(p))


@app.command()
def study(
    name: Optional[str] = typer.Argument(None, help="the study to run; leave out to list them"),
    scale: str = typer.Option("cpu", help="ci (tiny) | cpu (the committed figures) | gpu (the paper's size)"),
    out: Path = typer.Option(Path("figures"), help="folder for the table and figures"),
    jobs: int = JOBS,
):
    """List the studies, or run one: its tidy table and figures go to --out."""
    from madloop.studies import STUDIES, load_all, run_study

    if name is None:
        load_all()
        for n in STUDIES.names():
            typer.echo(f"{n}: {STUDIES[n].description}")
        return
    for p in run_study(name, scale, out, jobs):
        typer.echo(str(p))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep(
    ctx: typer.Context,
    out: Path = typer.Option(..., help="folder for the sweep (one run directory per point)"),
    config: Optional[Path] = typer.Option(None, "--config", help="common settings (.toml or .json)"),
    preset: Optional[str] = typer.Option(None, help="a named preset for the common settings"),
    jobs: int = JOBS,
    force: bool = typer.Option(False, "--force", help="replace runs already in --out"),
    backend: str = BACKEND,
    scheduler: Optional[str] = SCHEDULER,
    checkpoint_s: float = CHECKPOINT_S,
):
    """Run a grid: any flag with comma-separated values is an axis (--omega 0,1,2 --n-synth 125,250)."""
    from madloop.sweep import sweep as run_sweep

    settings = parse_extra(ctx.args)
    axes = {k: list(v) for k, v in settings.items() if isinstance(v, tuple) and not takes_tuple(k)}
    common = {k: v for k, v in settings.items() if k not in axes}
    if not axes:
        raise MadloopError("a sweep needs at least one axis: a flag with comma-separated values, e.g. --lam 1,0.7,0.5")
    with _working(backend, scheduler, jobs):
        result = run_sweep(axes, out=out, jobs=jobs, force=force, preset=preset, config_file=config,
                           checkpoint_s=checkpoint_s, **common)
    path = out / "summary.csv"
    result.summary().to_csv(path, index=False)
    typer.echo(f"{len(result.points)} runs in {out}; summary: {path}")


@app.command()
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
    try:
        code = app(standalone_mode=False)
    except MadloopError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except (Interrupted, typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted: the run directory keeps what finished; continue with `madloop resume DIR`", err=True)
        sys.exit(130)
    except _usage_errors() as err:
        typer.echo(f"error: {getattr(err, 'format_message', err.__str__)()}", err=True)
        sys.exit(2)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
