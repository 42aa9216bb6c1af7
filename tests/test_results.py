"""The intervals of madloop.results: Student t for means, a bootstrap over runs for ratios of means."""

import numpy as np
import pytest
from scipy import stats

import madloop
from madloop.measure import sums
from madloop.results import mean_ci, ratio_interval


def z_delta_interval(a, b):
    """The interval the summaries used to report: delta method on the paired runs, z = 1.96."""
    n, ma, mb = len(a), a.mean(), b.mean()
    r = ma / mb
    cov = np.cov(a, b)
    se = np.sqrt((cov[0, 0] - 2 * r * cov[0, 1] + r**2 * cov[1, 1]) / (n * mb**2))
    return r - 1.96 * se, r + 1.96 * se


def test_the_mean_interval_is_student_t_by_hand():
    values = np.array([1.0, 2.0, 3.0, 4.0, 6.0])  # mean 3.2, sample variance 14.8 / 4 = 3.7
    mean, sem, half = mean_ci(sums(values, None))
    assert mean == pytest.approx(3.2) and sem == pytest.approx(np.sqrt(3.7 / 5))
    assert half == pytest.approx(stats.t.ppf(0.975, 4) * np.sqrt(3.7 / 5))  # 2.776 x 0.860 = 2.388, not 1.96 x
    assert half == pytest.approx(2.3883, abs=1e-4)


def draw_pairs(rng, n):
    """Positive, skewed, correlated pairs: b ~ Gamma(5), a = b + Gamma(3); E[a] / E[b] = 8 / 5."""
    b = rng.gamma(5.0, size=n)
    return b + rng.gamma(3.0, size=n), b


def test_the_ratio_interval_covers_the_true_ratio_with_six_runs_and_is_wider_than_z():
    rng = np.random.default_rng(1)
    hits, widths, z_widths = 0, [], []
    for _ in range(400):
        a, b = draw_pairs(rng, 6)
        r, lo, hi = ratio_interval(a, b)
        assert lo <= r <= hi and r == pytest.approx(a.mean() / b.mean())
        hits += lo <= 1.6 <= hi
        widths.append(hi - lo)
        z_lo, z_hi = z_delta_interval(a, b)
        z_widths.append(z_hi - z_lo)
    assert hits / 400 >= 0.92  # nominal 0.95; the binomial sd of 400 draws is 0.011
    assert np.median(np.array(widths) / np.array(z_widths)) > 1.2  # t_5 / 1.96 = 1.31


def test_the_ratio_interval_is_deterministic_given_its_seed():
    a, b = draw_pairs(np.random.default_rng(2), 6)
    assert ratio_interval(a, b) == ratio_interval(a, b)
    assert ratio_interval(a, b, seed=1) != ratio_interval(a, b)
    assert ratio_interval(a, b, seed=1)[0] == ratio_interval(a, b)[0]


def test_the_ratio_interval_leaves_out_broken_pairs_and_needs_five_runs():
    a, b = draw_pairs(np.random.default_rng(3), 8)
    broken_a, broken_b = np.append(a, np.nan), np.append(b, 1.0)
    assert ratio_interval(broken_a, broken_b) == ratio_interval(a, b)
    r, lo, hi = ratio_interval(a[:4], b[:4])  # too few runs for a 95% bootstrap: the ratio, no interval
    assert r == pytest.approx(a[:4].mean() / b[:4].mean()) and np.isnan([lo, hi]).all()
    assert np.isfinite(ratio_interval(a[:5], b[:5])).all()
    assert np.isnan(ratio_interval(a[:1], b[:1])).all()


def test_summaries_use_the_bootstrap_for_ratios_and_t_for_means(tmp_path):
    result = madloop.run(out=tmp_path / "r", loop="fully_synthetic", runs=6, gens=4, n_real=20, n_synth=20,
                         metrics=("true_w2",))
    values = result.table[result.table.metric == "true_w2"].pivot(index="run", columns="gen", values="value")
    row = result.summary().set_index(["metric", "gen"]).loc[("true_w2", 4)]
    r, lo, hi = ratio_interval(values[4].to_numpy(), values[1].to_numpy())
    assert (row.mad_ratio, row.mad_ratio_low, row.mad_ratio_high) == pytest.approx((r, lo, hi))
    v = values[4].to_numpy()
    assert row.ci_high - row["mean"] == pytest.approx(stats.t.ppf(0.975, 5) * stats.sem(v))
    head = result.headline(window=2).set_index("metric").loc["true_w2"]
    late = values[[2, 3, 4]].mean(axis=1).to_numpy()
    assert (head.convergence_ratio, head.convergence_ratio_low, head.convergence_ratio_high) == pytest.approx(
        ratio_interval(late, values[1].to_numpy()))


def test_without_every_runs_rows_a_ratio_has_no_interval(tmp_path):
    result = madloop.run(out=tmp_path / "r", loop="fully_synthetic", runs=6, gens=2, n_real=20, n_synth=20,
                         metrics=("true_w2",), store_runs=5)
    row = result.summary().set_index(["metric", "gen"]).loc[("true_w2", 2)]
    assert np.isfinite(row.mad_ratio) and np.isnan(row.mad_ratio_low) and np.isnan(row.mad_ratio_high)


def test_no_mad_ratio_for_a_quantity_that_can_be_zero_or_negative(tmp_path, tiny):
    """KID's unbiased estimate falls below zero near its floor: a ratio of its means (0.06, '94% better') says
    nothing; nor does one of any metric whose floor or first generation is not above zero. The headline says why."""
    import madloop
    from madloop.cli import headline_text
    from madloop.results import no_ratio

    assert "zero or negative" in no_ratio("kid") and no_ratio("w2") is None
    assert no_ratio("model_trace") == "not a distance to p_r" and "floor is -0.011" in no_ratio("w2", floor=-0.011)

    @madloop.metric("offset")  # a signed difference: about zero for real data
    def offset(samples, reference):
        return float(samples[:, 0].mean() - reference[:, 0].mean())

    run = madloop.run(**{**tiny, "metrics": ("w2", "offset")}, out=tmp_path / "r")
    head = run.headline().set_index("metric")
    assert np.isnan(head.loc["offset", "mad_ratio"]) and np.isnan(head.loc["offset", "convergence_ratio"])
    assert np.isfinite(head.loc["w2", "mad_ratio"])
    assert "offset: its " in headline_text(run, None) and "not above zero, so no MAD or convergence ratio" in headline_text(run, None)
