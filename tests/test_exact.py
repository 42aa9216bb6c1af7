"""The exact Gaussian path (models/exact.py) and the closed-form distances to the truth (metrics/model.py).

Symbols: n points per generation, d dimensions, lam the sampling bias, Sigma_t the fitted covariance.
"""

import numpy as np
import pytest
from scipy import linalg, stats
from scipy.special import digamma, polygamma

import madloop
from madloop.data import GaussianData, MixtureData
from madloop.gaussian import gaussian_w2
from madloop.metrics import Evaluation
from madloop.models.exact import ExactGaussian, Stats, StatsData, StatsModel, draw_stats, psd_cholesky
from madloop.rng import RUNS_PER_BLOCK, RunRNG
from madloop.runner import build
from madloop.metrics.model import true_cov_err, true_kl, true_kl_rev, true_mean_err, true_w2

E1 = GaussianData()  # SPEC E1's p_r = N(0, [[2, 1], [1, 2]])
TRUTH_3D = GaussianData(mean=(1.0, -1.0, 0.5), cov=((2.0, 0.5, 0.0), (0.5, 1.0, 0.3), (0.0, 0.3, 0.5)))
RUNS = 100_000


def random_model(runs: int, d: int, seed: int) -> StatsModel:
    """Per-run means and well-conditioned covariances, all different."""
    g = np.random.default_rng(seed)
    A = g.standard_normal((runs, d, d))
    return StatsModel(g.standard_normal((runs, d)), A @ np.swapaxes(A, 1, 2) / d + 0.2 * np.eye(d))


def log_pdet(S: np.ndarray, rank: int) -> np.ndarray:
    """Sum of the logs of the ``rank`` largest eigenvalues (the log-determinant where S is full rank)."""
    return np.log(np.linalg.eigvalsh(S)[:, -rank:]).sum(-1)


def assert_mean_close(samples, expected, z=4.5):
    se = samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(samples.mean() - expected) < z * se, (samples.mean(), expected, se)


# ---------------------------------------------------------------- sufficient statistics


def test_pooled_statistics_equal_those_of_the_joined_points():
    g = np.random.default_rng(0)
    parts = [g.standard_normal((7, k, 3)) * s + s for k, s in ((4, 1.0), (1, 3.0), (25, 0.5))]
    pooled = Stats.concat([Stats.of(x) for x in parts])
    joined = Stats.of(np.concatenate(parts, axis=1))
    assert pooled.n == joined.n == 30 and pooled.n_runs == 7
    np.testing.assert_allclose(pooled.mean, joined.mean, rtol=1e-12)
    np.testing.assert_allclose(pooled.scatter, joined.scatter, rtol=1e-12)


def test_psd_cholesky_factors_singular_and_regular_matrices():
    g = np.random.default_rng(1)
    for rank in (0, 1, 2, 4):
        B = g.standard_normal((50, 4, rank))
        cov = B @ np.swapaxes(B, 1, 2)
        L = psd_cholesky(cov)
        np.testing.assert_allclose(L @ np.swapaxes(L, 1, 2), cov, atol=1e-12)
        assert (np.triu(L, 1) == 0).all()
    np.testing.assert_allclose(psd_cholesky(cov), np.linalg.cholesky(cov))


@pytest.mark.parametrize("m", [3, 10, 200])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_drawn_statistics_match_those_of_materialised_points(m, d):
    runs, lam = 20_000, 0.6
    model = random_model(runs, d, seed=10 * m + d)
    drawn = model.sample(m, RunRNG(3, range(0, runs), 1, "stats"), lam)
    points = Stats.of(model.sample_points(m, RunRNG(3, range(0, runs), 1, "points"), lam).x)
    rank = min(m - 1, d)
    for f in (lambda s: np.trace(s.scatter, axis1=1, axis2=2), lambda s: log_pdet(s.scatter, rank),
              lambda s: ((s.mean - model.mean) ** 2).sum(-1)):
        a, b = f(drawn), f(points)
        se = np.sqrt(a.var() / runs + b.var() / runs)
        assert abs(a.mean() - b.mean()) < 4.5 * se, (m, d, a.mean(), b.mean(), se)
        assert stats.ks_2samp(a, b).pvalue > 1e-4, (m, d)
    assert drawn.n == m and drawn.mean.shape == (runs, d) and drawn.scatter.shape == (runs, d, d)


def test_few_points_give_a_scatter_of_rank_m_minus_1():
    for m in (1, 2, 3):
        s = draw_stats(np.zeros(4), np.eye(4), m, RunRNG(0, range(0, 20), 0, "x"))
        assert (np.linalg.matrix_rank(s.scatter) == m - 1).all()


def test_a_singular_covariance_keeps_its_support():
    u = np.array([1.0, 2.0, -1.0])
    s = draw_stats(np.ones(3), np.outer(u, u), 50, RunRNG(0, range(0, 300), 0, "x"))
    np.testing.assert_allclose(np.cross(s.mean - 1.0, u), 0.0, atol=1e-12)  # the mean moves along u only
    np.testing.assert_allclose(s.scatter, (s.scatter @ u / (u @ u))[:, :, None] * u, atol=1e-10)


def test_a_chunk_draws_the_same_statistics_alone_or_with_the_others():
    cov, b = np.array([[2.0, 1.0], [1.0, 2.0]]), RUNS_PER_BLOCK
    whole = draw_stats(np.zeros(2), cov, 20, RunRNG(4, range(0, 3 * b), 2, "synth"))
    chunk = draw_stats(np.zeros(2), np.broadcast_to(cov, (2 * b, 2, 2)), 20, RunRNG(4, range(b, 3 * b), 2, "synth"))
    np.testing.assert_array_equal(whole.scatter[b:], chunk.scatter)
    np.testing.assert_array_equal(whole.mean[b:], chunk.mean)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="Gaussian data"):
        StatsData(MixtureData())
    with pytest.raises(ValueError, match="at least 2 points"):
        ExactGaussian(unbiased=True).fit(Stats(1, np.zeros((3, 2)), np.zeros((3, 2, 2))), None)
    with pytest.raises(ValueError, match="scatter"):
        Stats(5, np.zeros((3, 2)), np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="positive number of points"):
        draw_stats(np.zeros(2), np.eye(2), 0, RunRNG(0, range(0, 3), 0, "x"))


# ---------------------------------------------------------------- SPEC section 6 on the exact path


def direct(truth, n_real, n_synth, gens, runs, lam=1.0, unbiased=False, fresh=False, seed=0):
    """The loop written out with the exact path's parts: D^1 = D_r, D^t = S^(t-1) (or R^t + S^(t-1))."""
    data, spec, runs = StatsData(truth), ExactGaussian(unbiased), range(0, runs)
    train = data.sample(n_real, RunRNG(seed, runs, 0, "real"))
    models = []
    for t in range(1, gens + 1):
        models.append(spec.fit(train, RunRNG(seed, runs, t, "train")))
        synth = models[-1].sample(n_synth, RunRNG(seed, runs, t, "synth"), lam)
        train = Stats.concat([data.sample(n_real, RunRNG(seed, runs, t + 1, "real")), synth]) if fresh else synth
    return models


def engine(truth, n_real, n_synth, gens, runs, lam=1.0, unbiased=False, fresh=False, seed=0):
    """The same loop through madloop's engine on the exact path."""
    cfg = madloop.resolve(dict(loop="fresh" if fresh else "fully_synthetic", path="exact", n_real=n_real,
                               n_synth=n_synth, gens=gens, runs=runs, lam=lam, unbiased=unbiased, seed=seed,
                               mean=truth.mean, cov=truth.cov))
    return [g.model for g in madloop.generations(cfg, build(cfg), range(0, runs))]


@pytest.fixture(params=[direct, engine], ids=["direct", "engine"])
def loop(request):
    return request.param


def fitted(models):
    """(gens, runs, ...) arrays of every generation's fitted mean and covariance."""
    return np.stack([m.mean for m in models]), np.stack([m.cov for m in models])


@pytest.mark.parametrize("lam", [1.0, 0.7])
def test_expected_trace_shrinks_by_n_minus_1_over_n_per_fit(loop, lam):
    n, gens = 10, 6
    _, cov = fitted(loop(E1, n, n, gens, RUNS, lam=lam, seed=11))
    trace = np.trace(cov, axis1=-2, axis2=-1) / np.trace(E1.truth[1])
    for t in range(1, gens + 1):
        assert_mean_close(trace[t - 1], ((n - 1) / n) ** t * lam ** (t - 1))


@pytest.mark.parametrize("truth", [E1, TRUTH_3D], ids=["2d", "3d"])
def test_log_determinant_increments_follow_the_digamma_law(loop, truth):
    n, gens = 8, 5
    d = len(truth.mean)
    _, cov = fitted(loop(truth, n, n, gens, RUNS, seed=5))
    logdet = np.linalg.slogdet(cov)[1]
    steps = np.diff(np.concatenate([np.full((1, RUNS), np.linalg.slogdet(truth.truth[1])[1]), logdet]), axis=0)
    # log det(A A^T / n) = sum_i log chi2(n - i) - d log n: iid steps of known mean and variance.
    mean = sum(digamma((n - i) / 2) for i in range(1, d + 1)) + d * np.log(2 / n)
    var = sum(polygamma(1, (n - i) / 2) for i in range(1, d + 1))
    for step in steps:
        assert_mean_close(step, mean)
        se_var = np.sqrt((((step - step.mean()) ** 4).mean() - step.var() ** 2) / RUNS)
        assert abs(step.var() - var) < 4.5 * se_var, (step.var(), var, se_var)


def test_log_determinant_stays_exact_deep_in_the_collapse(loop):
    n, gens, runs = 3, 30, 20_000  # Sigma_t's condition number passes 1e16 in most runs
    models = loop(E1, n, n, gens, runs, seed=8)
    step = models[-1].logdet() - models[-2].logdet()
    assert_mean_close(step, sum(digamma((n - i) / 2) for i in (1, 2)) + 2 * np.log(2 / n))
    well = direct(E1, 100, 100, 1, 1000)[0]
    np.testing.assert_allclose(well.logdet(), np.linalg.slogdet(well.cov)[1], rtol=1e-10)


def test_unbiased_fit_keeps_the_mean_trace_but_the_median_collapses(loop):
    n, gens = 10, 30
    _, cov = fitted(loop(E1, n, n, gens, RUNS, unbiased=True, seed=2))
    trace = np.trace(cov, axis1=-2, axis2=-1) / np.trace(E1.truth[1])
    for t in (1, 3, 5):  # early: the mean is not yet carried by rare runs
        assert_mean_close(trace[t - 1], 1.0)
    assert np.median(trace[-1]) < 0.5  # while the typical run has lost more than half its spread


def test_fresh_loop_mean_error_reaches_the_effective_sample_size(loop):
    n_r, n_s, gens, runs = 100, 200, 25, 20_000
    mean, _ = fitted(loop(E1, n_r, n_s, gens, runs, fresh=True, seed=9))
    err2 = (mean[-5:] ** 2).sum(-1).ravel()
    n_eff = n_r * (n_r + 2 * n_s) / (n_r + n_s)
    expected = np.trace(E1.truth[1]) / n_eff
    se = err2.std(ddof=1) / np.sqrt(runs)  # generations are correlated: count runs only
    assert abs(err2.mean() - expected) < 0.03 * expected + 4 * se


# ---------------------------------------------------------------- distances to the truth


def kl_reference(m0, S0, m1, S1):
    """KL(N(m0, S0) || N(m1, S1)), the textbook formula, one pair at a time."""
    inv, dm = np.linalg.inv(S1), m1 - m0
    d = len(m0)
    return 0.5 * (np.trace(inv @ S0) + dm @ inv @ dm - d + np.linalg.slogdet(S1)[1] - np.linalg.slogdet(S0)[1])


def w2_reference(m0, S0, m1, S1):
    root = linalg.sqrtm(S1)
    cross = np.real(np.trace(linalg.sqrtm(root @ S0 @ root)))
    return np.sqrt(np.sum((m0 - m1) ** 2) + np.trace(S0) + np.trace(S1) - 2 * cross)


def evaluation(model, truth):
    return Evaluation(None, None, model, truth=truth.truth)


@pytest.mark.parametrize("truth", [GaussianData(mean=(0.3,), cov=((1.5,),)), E1, TRUTH_3D], ids=["1d", "2d", "3d"])
def test_truth_metrics_match_the_textbook_formulas(truth):
    mu, Sigma = truth.truth
    model = random_model(40, len(mu), seed=7)
    ev = evaluation(model, truth)
    pairs = list(zip(model.mean, model.cov))
    np.testing.assert_allclose(true_kl(ev), [kl_reference(mu, Sigma, m, S) for m, S in pairs], rtol=1e-9)
    np.testing.assert_allclose(true_kl_rev(ev), [kl_reference(m, S, mu, Sigma) for m, S in pairs], rtol=1e-9)
    np.testing.assert_allclose(true_w2(ev), [w2_reference(m, S, mu, Sigma) for m, S in pairs], rtol=1e-7)
    np.testing.assert_allclose(true_w2(ev), gaussian_w2(model.mean, model.cov, mu, Sigma), rtol=1e-9)
    np.testing.assert_allclose(true_mean_err(ev), [np.linalg.norm(m - mu) for m, _ in pairs])
    np.testing.assert_allclose(true_cov_err(ev), [np.linalg.norm(S - Sigma) for _, S in pairs])


def test_kl_directions_agree_with_monte_carlo():
    mu, Sigma = E1.truth
    m, S = np.array([1.0, -0.5]), np.array([[0.5, 0.2], [0.2, 0.3]])
    ev = evaluation(StatsModel(m[None], S[None]), E1)
    p, q = stats.multivariate_normal(mu, Sigma), stats.multivariate_normal(m, S)
    g = np.random.default_rng(0)
    for value, a, b in ((true_kl(ev)[0], p, q), (true_kl_rev(ev)[0], q, p)):
        x = a.rvs(200_000, random_state=g)
        log_ratio = a.logpdf(x) - b.logpdf(x)
        assert abs(log_ratio.mean() - value) < 4.5 * log_ratio.std() / np.sqrt(len(x)), (log_ratio.mean(), value)


@pytest.mark.parametrize("truth", [E1, TRUTH_3D], ids=["2d", "3d"])
def test_a_singular_fit_is_infinitely_far_in_kl_but_not_in_w2(truth):
    mu, Sigma = truth.truth
    u = np.ones(len(mu))
    model = StatsModel(np.stack([mu, mu]), np.stack([np.outer(u, u), Sigma]))
    ev = evaluation(model, truth)
    assert true_kl(ev)[0] == np.inf and true_kl_rev(ev)[0] == np.inf
    np.testing.assert_allclose([true_kl(ev)[1], true_kl_rev(ev)[1], true_w2(ev)[1]], 0.0, atol=1e-7)
    assert np.isfinite(true_w2(ev)[0])


def test_truth_metrics_need_the_truth():
    ev = Evaluation(None, None, random_model(3, 2, seed=0))
    with pytest.raises(ValueError, match="no truth"):
        true_kl(ev)
