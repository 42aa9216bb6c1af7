"""Figures: what they draw (bands, ticks, legends, log scale) and the inputs they refuse with one line."""

import dataclasses
import sys

import numpy as np
import pytest

import madloop
from madloop.cli import main
from madloop.errors import MadloopError
from madloop.plots import band, figure, plot_runs
from madloop.measure import SUMS

TINY = dict(gens=3, n_real=20, n_synth=20, n_eval=30, n_ref=30, path="samples", jobs=1)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs: with so few, the Student-t interval of W2's mean reaches below zero."""
    return madloop.run(out=tmp_path_factory.mktemp("plots") / "r", runs=2, seed=3, metrics=("w2", "model_logdet"), **TINY)


def cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["madloop", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def test_bands_of_non_negative_quantities_stay_above_zero(two_runs):
    s = two_runs.summary()
    assert (s[s.metric == "w2"].ci_low < 0).any()  # what a symmetric band would draw
    fig = figure([two_runs])
    w2_top, w2_ratio = fig.axes[0], fig.axes[2]
    lows = [path.vertices[:, 1].min() for c in w2_top.collections for path in c.get_paths()]
    assert lows and min(lows) > 0
    # The ratio's interval is a bootstrap: two runs give it none (results.MIN_RUNS), so no band is drawn.
    assert not [path for c in w2_ratio.collections for path in c.get_paths()]
    low, high = band(np.array([0.5]), np.array([0.2]), positive=True)  # the log band: asymmetric, same to first order
    assert 0.5 - 0.2 < low[0] < 0.5 < 0.5 + 0.2 < high[0]


def test_generation_ticks_are_integers_and_logy_applies_to_positive_quantities(two_runs):
    fig = figure([two_runs], logy=True)
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert fig.axes[0].get_yscale() == "log" and fig.axes[2].get_yscale() == "log"  # W2 and its MAD ratio
    assert figure([two_runs]).axes[0].get_yscale() == "linear"


def test_the_legend_names_omega_for_sims_runs(two_runs):
    sims = dataclasses.replace(two_runs, config=dataclasses.replace(two_runs.config, algo="sims",
                                                                    algo_options={"omega": 3.0}))
    one = [t.get_text() for t in figure([sims]).legends[0].get_texts()]
    both = [t.get_text() for t in figure([two_runs, sims]).legends[0].get_texts()]
    assert "ω=3" in one[0] and "ω=3" not in both[0] and "ω=3" in both[1]


def test_runs_that_share_no_metric_are_refused_and_nothing_is_written(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    madloop.run(out="a", runs=2, metrics=("w2",), **TINY)
    madloop.run(out="b", runs=2, metrics=("gauss_w2",), **TINY)
    code, err = cli(monkeypatch, capsys, "plot", "a", "b", "--out", "figs")
    assert code == 2 and err.startswith("error: the runs share no metric") and err.count("\n") == 1, err
    assert not (tmp_path / "figs").exists()


def test_a_run_without_moments_is_refused_by_name(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    madloop.run(out="r", runs=2, **TINY)
    (tmp_path / "r" / "moments.parquet").unlink()
    with pytest.raises(MadloopError, match="without its moments.parquet"):
        madloop.load("r")
    code, err = cli(monkeypatch, capsys, "plot", "r", "--out", "figs")
    assert code == 2 and "r is a finished run without its moments.parquet" in err and err.count("\n") == 1, err
    assert not (tmp_path / "figs").exists()


def no_finite_value(moments):
    """The sums of runs whose every value was NaN or inf: they count no value (measure.sums)."""
    return moments.assign(**dict.fromkeys(SUMS, 0.0))


def test_a_metric_that_is_nan_everywhere_draws_no_figure(monkeypatch, capsys, tmp_path, two_runs):
    nan = dataclasses.replace(two_runs, moments=no_finite_value(two_runs.moments))
    with pytest.raises(MadloopError, match="no figure: every run's w2 and model_logdet in .* NaN or infinite"):
        plot_runs([nan], tmp_path / "figs")
    assert not (tmp_path / "figs").exists()
    # The same from the command line, on a run directory whose values are all NaN.
    monkeypatch.chdir(tmp_path)
    madloop.run(out="r", runs=2, **TINY)
    moments = madloop.load("r").moments
    no_finite_value(moments).to_parquet(tmp_path / "r" / "moments.parquet", index=False)
    code, err = cli(monkeypatch, capsys, "plot", "r", "--out", "figs")
    assert code == 2 and err.startswith("error: no figure: every run's") and err.count("\n") == 1, err
    assert not (tmp_path / "figs").exists()


def test_importing_plots_leaves_the_users_matplotlib_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import madloop.plots, matplotlib; "
            "print(matplotlib.get_backend())")
    env = {k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "svg", out.stderr
