"""The CLI end to end, as a user runs it (real subprocesses)."""

import subprocess
import sys

import pandas as pd


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
