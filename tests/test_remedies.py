"""Remedies for MADness (SPEC section 4b, madloop/remedies.py): each one's defining property, and the
golden-ratio law of real-data weighting (SPEC section 6) within Monte-Carlo error."""

import numpy as np
import pytest

import madloop
from madloop.errors import MadloopError
from madloop.gaussian import mean_cov
from madloop.models.exact import ExactGaussian, Stats
from madloop.models.gmm import em, initial_params, columns, seeding_draws
from madloop.runner import build
from madloop.rng import RunRNG
from madloop.samples import Samples

TRACE = 4.0  # tr Sigma of the default p_r = N(0, [[2, 1], [1, 2]])


def fitted_means(cfg) -> np.ndarray:
    """(gens, runs, d): every generation's fitted mean."""
    return np.stack([g.model.mean for g in madloop.generations(cfg, build(cfg), range(cfg.runs))])


# Real-data weighting.

def golden_ratio_law(w: float, n: int, m: int) -> float:
    """SPEC section 6: the stationary E||mu_hat - mu||^2 of the fresh data loop with real weight w."""
    k = n / m
    return TRACE / n * (w * w + k * (1 - w) ** 2) / (w * (2 - w))


def exact_moments(w: float, n: int, m: int, gens: int) -> np.ndarray:
    """E||mu_t - mu||^2 for t = 1..gens of the loop as madloop runs it (the covariance fitted by weighted
    maximum likelihood, not held at the truth), from the exact recursions of V_t = E||mu_t - mu||^2 and
    T_t = E tr Sigma_t: with mu_t = w xbar + (1 - w) ybar, xbar ~ N(mu, Sigma / n), ybar ~ N(mu_(t-1), Sigma_(t-1) / m),
        V_t = w^2 tr Sigma / n + (1 - w)^2 (V_(t-1) + T_(t-1) / m)
        T_t = w tr Sigma (n - 1) / n + (1 - w) T_(t-1) (m - 1) / m + w (1 - w) (tr Sigma / n + T_(t-1) / m + V_(t-1)).
    """
    v, t = TRACE / n, TRACE * (n - 1) / n
    out = [v]
    for _ in range(gens - 1):
        v, t = (w * w * TRACE / n + (1 - w) ** 2 * (v + t / m),
                w * TRACE * (n - 1) / n + (1 - w) * t * (m - 1) / m + w * (1 - w) * (TRACE / n + t / m + v))
        out.append(v)
    return np.array(out)


N_REAL, N_SYNTH, GENS, LATE = 100, 100, 30, 10
W_STAR = (np.sqrt(1 + 4) - 1) / 2  # k = n / m = 1: the golden ratio's inverse, 0.618


def late_errors(w: float, path: str, runs: int) -> np.ndarray:
    """Each run's mean of ||mu_t - mu||^2 over the generations t > LATE (runs are independent; generations are not)."""
    cfg = madloop.resolve(dict(loop="fresh", n_real=N_REAL, n_synth=N_SYNTH, gens=GENS, runs=runs, seed=7, real_weight=w,
                               path=path))
    return (fitted_means(cfg)[LATE:] ** 2).sum(-1).mean(0)


@pytest.fixture(scope="module")
def exact_path_errors():
    return {w: late_errors(w, "exact", 20000) for w in (W_STAR, 0.5, 0.9)}


@pytest.mark.parametrize("w", [W_STAR, 0.5, 0.9])
def test_golden_ratio_law_of_the_fresh_data_loop(w, exact_path_errors):
    err = exact_path_errors[w]
    se = err.std(ddof=1) / np.sqrt(len(err))
    expected = exact_moments(w, N_REAL, N_SYNTH, GENS)[LATE:].mean()
    assert abs(err.mean() - expected) < 4 * se, (err.mean(), expected, se)
    # Fitting the covariance moves the law by less than 0.5%: the SPEC's closed form holds within that.
    law = golden_ratio_law(w, N_REAL, N_SYNTH)
    assert abs(expected / law - 1) < 0.005
    assert abs(err.mean() - law) < 4 * se + abs(expected - law)


def test_the_golden_ratio_weight_is_the_best(exact_path_errors):
    # Paired runs (same seed: same real draws): w* beats the count share 1/2 and w = 0.9, by the law's margins.
    best = exact_path_errors[W_STAR]
    assert golden_ratio_law(W_STAR, N_REAL, N_SYNTH) == pytest.approx(W_STAR * TRACE / N_REAL)
    for w in (0.5, 0.9):
        d = exact_path_errors[w] - best
        se = d.std(ddof=1) / np.sqrt(len(d))
        margin = golden_ratio_law(w, N_REAL, N_SYNTH) - golden_ratio_law(W_STAR, N_REAL, N_SYNTH)
        assert d.mean() > 10 * se
        assert abs(d.mean() - margin) < 4 * se + 0.01 * margin


def test_golden_ratio_law_on_the_sample_path():
    err = late_errors(W_STAR, "samples", 3000)
    se = err.std(ddof=1) / np.sqrt(len(err))
    assert abs(err.mean() - exact_moments(W_STAR, N_REAL, N_SYNTH, GENS)[LATE:].mean()) < 4 * se


@pytest.mark.parametrize("family", [dict(path="samples"), dict(path="exact"), dict(model="gmm", data="mixture", iters=20)])
@pytest.mark.parametrize("loop", ["augmentation", "fresh"])
def test_the_count_share_as_real_weight_gives_todays_table(family, loop, tmp_path):
    n_real, n_synth = 30, 20
    settings = dict(loop=loop, n_real=n_real, n_synth=n_synth, gens=4, runs=6, n_eval=40, n_ref=40, seed=3, **family)
    today = madloop.run(out=tmp_path / "a", **settings).table
    weighted = madloop.run(out=tmp_path / "b", real_weight=n_real / (n_real + n_synth), **settings).table
    assert len(today) and (today[["run", "gen", "metric"]].values == weighted[["run", "gen", "metric"]].values).all()
    np.testing.assert_allclose(weighted.value, today.value, rtol=1e-12, atol=1e-12)


def test_real_weight_one_ignores_the_synthetic_data():
    cfg = madloop.resolve(dict(loop="augmentation", n_real=20, n_synth=50, gens=4, runs=5, real_weight=1.0, path="samples"))
    models = [g.model for g in madloop.generations(cfg, build(cfg), range(5))]
    for m in models[1:]:  # every generation refits D_r alone
        np.testing.assert_allclose(m.mean, models[0].mean, rtol=1e-12)
        np.testing.assert_allclose(m.cov, models[0].cov, rtol=1e-12)


def test_weights_act_as_repeated_points():
    rng = np.random.default_rng(0)
    x, reps = rng.standard_normal((3, 12, 2)), rng.integers(1, 4, (3, 12))
    reps[:, -1] += reps.sum(1).max() - reps.sum(1)  # one total count for all runs: a rectangular array
    repeated = np.stack([np.repeat(x[r], reps[r], axis=0) for r in range(3)])
    for got, want in zip(mean_cov(x, w=reps.astype(float)), mean_cov(repeated)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # Equal weights: the unweighted fit, including the unbiased covariance.
    for ddof in (0, 1):
        for got, want in zip(mean_cov(x, ddof, np.full((3, 12), 0.3)), mean_cov(x, ddof)):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    # EM from one start: integer weights (scaled to sum to n, as the gmm's fit scales them) give the fit of
    # the repeated points.
    u = seeding_draws(RunRNG(0, range(3), 1, "fit"), 2)
    start = initial_params(columns(repeated), u, 1e-6)
    v = 12 * reps / reps.sum(1, keepdims=True)
    for got, want in zip(em(columns(x), *start, 1e-6, 0.0, 5, v), em(columns(repeated), *start, 1e-6, 0.0, 5)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_weighted_statistics_pool_like_weighted_points():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 7, 2)), 2 + rng.standard_normal((4, 5, 2))
    pooled = Stats.concat([Stats.of(a).weighted(0.3), Stats.of(b).weighted(0.7)])
    points = Samples.concat([Samples(a).weighted(0.3), Samples(b).weighted(0.7)])
    np.testing.assert_allclose(points.w.sum(1), 1.0)
    for unbiased in (False, True):
        model = ExactGaussian(unbiased).fit(pooled, None)
        mean, cov = mean_cov(points.x, int(unbiased), points.w)
        np.testing.assert_allclose(model.mean, mean, rtol=1e-12)
        np.testing.assert_allclose(model.cov, cov, rtol=1e-12)
    with pytest.raises(ValueError, match="weighted and unweighted"):
        Stats.concat([Stats.of(a).weighted(0.3), Stats.of(b)])
    with pytest.raises(ValueError, match="weighted and unweighted"):
        Samples.concat([Samples(a).weighted(0.3), Samples(b)])
    assert np.array_equal(points.take(np.array([[0, 8]] * 4)).w, points.w[:, [0, 8]])


@pytest.mark.parametrize("settings, message", [
    (dict(real_weight=0.5), "fully synthetic loop trains on synthetic data alone"),
    (dict(loop="fresh", real_weight=1.5), r"real_weight must be in \[0, 1\], got 1.5"),
    (dict(loop="fresh", real_weight=float("nan")), "real_weight must be a finite number or none, got nan"),
    (dict(loop="fresh", model="ddpm", real_weight=0.5), "real_weight needs a model family whose fit takes sample weights; 'ddpm'"),
])
def test_bad_real_weights_are_one_line(settings, message):
    if settings.get("model", "gaussian") not in madloop.MODELS:
        pytest.skip(f"{settings['model']} is not registered")
    with pytest.raises(MadloopError, match=message):
        madloop.resolve(settings)
