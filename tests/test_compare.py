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


def test_compare_refuses_what_it_cannot_pair(arms, tmp_path):
    a, _ = arms
    other = madloop.run(out=tmp_path / "other", seed=1, **SETTINGS)
    with pytest.raises(madloop.MadloopError, match="pairs runs of one seed"):
        madloop.compare(a, other, "true_w2")
    with pytest.raises(madloop.MadloopError, match="no rows of metric 'w2'"):
        madloop.compare(a, a, "w2")
    with pytest.raises(madloop.MadloopError, match="reaches the window"):
        madloop.compare(a, a, "true_w2", window=10)
