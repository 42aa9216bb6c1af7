"""The CLI end to end, as a user runs it (real subprocesses)."""

import re
import subprocess
import sys

import pandas as pd
import pytest


def madloop(*args, cwd):
    return subprocess.run([sys.executable, "-m", "madloop.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_run_plot_and_presets(tmp_path):
    (tmp_path / "tiny.toml").write_text("runs = 4\ngens = 3\nn_real = 30\nn_synth = 30\nn_eval = 30\nn_ref = 30\npath = \"samples\"\n")
    done = madloop("run", "--config", "tiny.toml", "--loop", "augmentation", "--out", "a", "--jobs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "results: a" in done.stdout and "mad_ratio" in done.stdout
    table = pd.read_parquet(tmp_path / "a" / "table.parquet")
    assert set(table.gen) == {0, 1, 2, 3} and set(table.run) == set(range(4))
    for ext in ("png", "pdf"):
        assert (tmp_path / "a" / "figures" / f"summary.{ext}").stat().st_size > 1000
    assert madloop("run", "--config", "tiny.toml", "--lam", "0.5", "--out", "b", "--no-progress", cwd=tmp_path).returncode == 0
    plotted = madloop("plot", "a", "b", "--out", "figs", "--labels", "lam=1,lam=0.5", cwd=tmp_path)
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "figs" / "summary.pdf").is_file()
    dry = madloop("run", "--model", "gmm", "--k", "3", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "[model_options]\nk = 3" in dry.stdout
    assert not (tmp_path / "runs").exists()
    swept = madloop("sweep", "--config", "tiny.toml", "--lam", "1,0.5", "--out", "sw", "--jobs", "1", cwd=tmp_path)
    assert swept.returncode == 0, swept.stderr
    assert set(pd.read_csv(tmp_path / "sw" / "summary.csv").lam) == {1.0, 0.5}
    plotted = madloop("plot", "sw", "--out", "figs", "--name", "sweep", cwd=tmp_path)
    assert plotted.returncode == 0 and (tmp_path / "figs" / "sweep.png").is_file(), plotted.stderr
    presets = madloop("presets", cwd=tmp_path)
    assert presets.returncode == 0 and "collapse:" in presets.stdout


def in_process(*args):
    """Run the CLI in a fresh interpreter; report which heavy modules it imported."""
    code = ("import sys\nfrom madloop.cli import main\nsys.argv = ['madloop', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as stop:\n    code = stop.code\n"
            "print('imported:', *sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))\n"
            "sys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["presets"], ["run", "--help"], ["sweep", "--help"],
                                  ["run", "--dry-run", "--model", "gmm"]])
def test_help_and_listings_import_neither_torch_nor_pandas(args):
    done = in_process(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "imported:", done.stdout


@pytest.mark.parametrize("path", [["--path", "exact"], ["--path", "samples", "--metrics", "gauss_w2,mean_err"]])
def test_a_gaussian_run_never_imports_torch(tmp_path, path):
    done = in_process("run", "--runs", "3", "--gens", "2", *path, "--no-progress", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    assert "torch" not in done.stdout.splitlines()[-1]


def test_version_and_python_dash_m(tmp_path):
    from madloop import __version__

    for command in (["-m", "madloop", "--version"], ["-m", "madloop.cli", "--version"]):
        done = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and done.stdout == f"madloop {__version__}\n", done.stderr
    assert "Commands:" in subprocess.run([sys.executable, "-m", "madloop", "--help"], capture_output=True, text=True).stdout


# Every setting and component option, as a fresh process registers them (tests here register components of their own).
OPTIONS = """
from madloop.config import COMPONENTS, CORE_FIELDS, option_types
print(*CORE_FIELDS, *(o for reg in COMPONENTS.values() for n in reg.names() for o in option_types(reg[n])))
"""


def test_help_lists_every_run_option_with_word_placeholders(tmp_path):
    run_help, sweep_help = madloop("run", "--help", cwd=tmp_path).stdout, madloop("sweep", "--help", cwd=tmp_path).stdout
    names = subprocess.run([sys.executable, "-c", OPTIONS], capture_output=True, text=True, check=True).stdout.split()
    options = {f"--{name.replace('_', '-')} " for name in names} - {"--accumulate "} | {"--accumulate / --replace"}
    for text in (run_help, sweep_help):
        missing = [o for o in options if o not in text]
        assert not missing, missing
    for command in ("run", "resume", "plot", "study", "sweep", "presets"):
        text = madloop(command, "--help", cwd=tmp_path).stdout
        assert not re.search(r"<\w", text), f"{command} --help has a placeholder in angle brackets:\n{text}"


def test_jobs_auto_picks_the_worker_count_from_the_work(monkeypatch):
    from madloop.cli import auto_jobs, parse_jobs
    from madloop.config import resolve
    from madloop.errors import MadloopError

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert auto_jobs(resolve(dict(runs=50, gens=20)))[0] == 1  # the exact path: instant
    assert auto_jobs(resolve(dict(runs=50, gens=20, path="samples")))[0] == 1
    assert auto_jobs(resolve(dict(runs=1000, gens=50, path="samples")))[0] == 8
    assert auto_jobs(resolve(dict(runs=10**6, gens=100)))[0] == 8
    assert auto_jobs(resolve(dict(model="ddpm", runs=2, gens=1)))[0] == 8  # a neural model
    assert auto_jobs(resolve(dict(data="digits", runs=6, gens=1)))[0] == 2  # two groups of 4 runs, one thread each
    assert auto_jobs(resolve(dict(data="digits", runs=64, gens=1)))[0] == 8
    assert parse_jobs("3", []) == (3, "as given")
    for bad in ("0", "-1", "two"):
        with pytest.raises(MadloopError, match="--jobs must be a positive integer or auto"):
            parse_jobs(bad, [])


def test_the_summary_says_why_a_column_is_empty_and_takes_a_window(tmp_path):
    done = madloop("run", "--runs", "4", "--gens", "3", "--no-plot", "--no-progress", "--out", "a", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "jobs=1 (" in done.stderr
    lines = done.stdout.splitlines()
    logdet = next(line for line in lines if line.split()[:1] == ["model_logdet"])
    assert logdet.split()[-4:] == ["-"] * 4  # no MAD or convergence ratio for a log-determinant
    assert "model_logdet, model_trace: not a distance to p_r, so no MAD or convergence ratio" in lines
    assert ("convergence ratio: empty, because it averages generations t >= 20 and this run has 3 "
            "(--window sets where it starts)") in lines
    windowed = madloop("resume", "a", "--window", "2", "--no-plot", cwd=tmp_path)
    assert windowed.returncode == 0, windowed.stderr
    true_w2 = next(line for line in windowed.stdout.splitlines() if line.split()[:1] == ["true_w2"])
    assert true_w2.split()[-3] != "-" and "convergence ratio: empty" not in windowed.stdout
    assert true_w2.split()[-2:] == ["-", "-"]  # 4 runs: a ratio, no interval, and the line says why
    assert ("ratio intervals (_low, _high): empty, because a bootstrap over 4 runs covers well under 95%; they need "
            "at least 5 runs") in windowed.stdout.splitlines()
    # The time line adds up: total = run + figure.
    time_line = next(line for line in done.stdout.splitlines() if line.startswith("time:"))
    total, run, figure = (float(x) for x in re.findall(r"([\d.]+) s", time_line)[:3])
    assert total == pytest.approx(run + figure, abs=0.11)


@pytest.mark.parametrize("value", ["nan", "-1"])
def test_a_bad_checkpoint_interval_is_one_line(tmp_path, value):
    done = madloop("run", "--checkpoint-s", value, "--out", "r", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "--checkpoint-s" in done.stderr and not (tmp_path / "r").exists()


def test_the_top_level_api_mirrors_the_cli(tmp_path, tiny):
    import madloop as api

    assert api.presets()["collapse"] == api.PRESETS["collapse"]
    sw = api.sweep({"lam": [1.0, 0.5]}, out=tmp_path / "sw", **tiny)
    opened = api.load(tmp_path / "sw")  # a sweep folder opens too
    pd.testing.assert_frame_equal(opened.table, sw.table)
    assert api.resume(tmp_path / "sw").points == sw.points
    paths = api.plot(tmp_path / "sw", out=tmp_path / "figs")
    assert all(p.stat().st_size > 1000 for p in paths)


def test_one_run_computes_its_summary_once(monkeypatch, capsys, tmp_path, tiny):
    """summary.csv, the figure and the headline read one summary: its bootstraps were two thirds of the default job."""
    import madloop.results
    from madloop.cli import main

    calls = []
    summarize = madloop.results.summarize
    monkeypatch.setattr(madloop.results, "summarize", lambda *a: calls.append(1) or summarize(*a))
    flags = [part for k, v in tiny.items() for part in (f"--{k.replace('_', '-')}", str(v))]
    monkeypatch.setattr(sys, "argv", ["madloop", "run", *flags, "--out", str(tmp_path / "r"), "--no-progress"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0 and (tmp_path / "r" / "figures" / "summary.png").is_file()
    assert len(calls) == 1
