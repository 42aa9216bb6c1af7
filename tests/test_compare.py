"""madloop.compare: two configurations of one seed compared run by run (SPEC section 5)."""

import numpy as np
import pytest
from scipy import stats

import madloop

SETTINGS = dict(runs=200, gens=4, n_real=50, n_synth=50, metrics=("model_trace", "true_w2"))


@pytest.fixture(scope="module")
def arms(tmp_path_factory):
    out = tmp_path_factory.mktemp("arms")
    return (madloop.run(out=out / "unbiased", lam=1.0, **SETTINGS), madloop.run(out=out / "biased", lam=0.7, **SETTINGS))


def test_arms_of_one_seed_share_generation_1_and_bias_shrinks_the_next(arms):
    a, b = arms
    table = madloop.compare(a, b, "model_trace").set_index("gen")
    first = table.loc[1]  # G^1 is fitted to the same D_r in both arms: every pair is equal
    assert first.n == 200 and first["diff"] == 0 and first.lo == first.hi == 0
    # G^2 is fitted to S^1 drawn with lam: E tr = lam ((n-1)/n)^2 tr Sigma against ((n-1)/n)^2 tr Sigma.
    second = table.loc[2]
    assert second.hi < 0 and second.lo < (0.7 - 1) * second.a < second.hi


def test_the_difference_and_its_interval_are_the_paired_t_interval(arms):
    a, b = arms
    got = madloop.compare(a, b, "true_w2").set_index("gen").loc[3]
    x = a.table.query("metric == 'true_w2' and gen == 3").sort_values("run").value.to_numpy()
    y = b.table.query("metric == 'true_w2' and gen == 3").sort_values("run").value.to_numpy()
    d = y - x
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    np.testing.assert_allclose([got["diff"], got.lo, got.hi, got.a, got.b], [d.mean(), lo, hi, x.mean(), y.mean()], rtol=1e-9)


def test_the_window_pairs_each_runs_late_mean(arms):
    a, b = arms
    table = madloop.compare(a, b, "true_w2", window=3)
    late = table[table.late].iloc[0]
    per_gen = table[~table.late].set_index("gen")
    assert late.gen == 3 and late["diff"] == pytest.approx(per_gen.loc[[3, 4], "diff"].mean())
    assert list(table.columns[:1]) == ["gen"] and {"diff", "lo", "hi"} <= set(table.columns)


def test_a_window_with_an_end_averages_only_its_generations(arms):
    a, b = arms
    table = madloop.compare(a, b, "true_w2", window=(2, 3))
    late = table[table.late].iloc[0]
    x = a.table.query("metric == 'true_w2' and gen in (2, 3)").groupby("run").value.mean()
    y = b.table.query("metric == 'true_w2' and gen in (2, 3)").groupby("run").value.mean()
    d = (y - x).to_numpy()
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert late.gen == 2 and [late["diff"], late.lo, late.hi] == pytest.approx([d.mean(), lo, hi])
    # The convergence ratio reads the same window.
    values = a.table.query("metric == 'true_w2'").pivot(index="run", columns="gen", values="value")
    assert a.convergence_ratio("true_w2", (2, 3))[0] == pytest.approx(values[[2, 3]].mean(axis=1).mean() / values[1].mean())


def test_compare_refuses_what_it_cannot_pair(arms, tmp_path):
    a, _ = arms
    other = madloop.run(out=tmp_path / "other", seed=1, **SETTINGS)
    with pytest.raises(madloop.MadloopError, match="one seed and number of runs; .* has seed 0, .* seed 1"):
        madloop.compare(a, other, "true_w2")
    fewer = madloop.run(out=tmp_path / "fewer", **{**SETTINGS, "runs": 100})
    with pytest.raises(madloop.MadloopError, match="has runs 200, .* runs 100"):
        madloop.compare(a, fewer, "true_w2")
    stored = madloop.run(out=tmp_path / "stored", **{**SETTINGS, "store_runs": 100})
    with pytest.raises(madloop.MadloopError, match="stored runs"):
        madloop.compare(a, stored, "true_w2")
    with pytest.raises(madloop.MadloopError, match="no rows of metric 'w2'"):
        madloop.compare(a, a, "w2")
    with pytest.raises(madloop.MadloopError, match="reaches the window"):
        madloop.compare(a, a, "true_w2", window=10)
    for bad in (0, (3, 2), 2.5, (1, 2, 3)):
        with pytest.raises(madloop.MadloopError, match="convergence window"):
            madloop.compare(a, a, "true_w2", window=bad)


def test_compare_opens_run_directories_given_as_paths(arms):
    """As load and plot do: a str or a Path for either arm gives the table of the opened Results."""
    a, b = arms
    expected = madloop.compare(a, b, "true_w2")
    for x, y in ((str(a.path), b.path), (a, str(b.path)), (a.path, b.path)):
        assert madloop.compare(x, y, "true_w2").equals(expected)
