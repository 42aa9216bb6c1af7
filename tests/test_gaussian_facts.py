"""SPEC section 6: exact facts of Gaussian loops, checked within Monte-Carlo error."""

import numpy as np
import pytest
from scipy.special import digamma

import madloop
from madloop.runner import build

TRUTH_COV = np.array([[2.0, 1.0], [1.0, 2.0]])


def fitted(cfg, runs):
    """(gens, runs, ...) arrays of every generation's fitted mean and covariance."""
    models = [g.model for g in madloop.generations(cfg, build(cfg), range(0, runs))]
    return np.stack([m.mean for m in models]), np.stack([m.cov for m in models])


def assert_mean_close(samples, expected, z=4.5):
    se = samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(samples.mean() - expected) < z * se, (samples.mean(), expected, se)


@pytest.mark.parametrize("lam", [1.0, 0.7])
def test_expected_trace_shrinks_by_n_minus_1_over_n_per_fit(lam):
    n, gens, runs = 10, 6, 20000
    cfg = madloop.resolve(dict(loop="fully_synthetic", n_real=n, n_synth=n, gens=gens, runs=runs, lam=lam, seed=11, path="samples"))
    _, cov = fitted(cfg, runs)
    trace = np.trace(cov, axis1=-2, axis2=-1) / np.trace(TRUTH_COV)
    for t in range(1, gens + 1):
        assert_mean_close(trace[t - 1], ((n - 1) / n) ** t * lam ** (t - 1))


def test_log_determinant_drifts_by_the_digamma_law():
    n, d, gens, runs = 8, 2, 5, 20000
    cfg = madloop.resolve(dict(loop="fully_synthetic", n_real=n, n_synth=n, gens=gens, runs=runs, seed=5, path="samples"))
    _, cov = fitted(cfg, runs)
    logdet = np.linalg.slogdet(cov)[1]
    steps = np.diff(np.concatenate([np.full((1, runs), np.linalg.slogdet(TRUTH_COV)[1]), logdet]), axis=0)
    expected = sum(digamma((n - i) / 2) for i in range(1, d + 1)) + d * np.log(2 / n)
    for step in steps:
        assert_mean_close(step, expected)


def test_unbiased_fit_keeps_the_mean_trace_but_the_median_collapses():
    n, gens, runs = 10, 30, 20000
    cfg = madloop.resolve(dict(loop="fully_synthetic", n_real=n, n_synth=n, gens=gens, runs=runs, unbiased=True, seed=2, path="samples"))
    _, cov = fitted(cfg, runs)
    trace = np.trace(cov, axis1=-2, axis2=-1) / np.trace(TRUTH_COV)
    assert_mean_close(trace[4], 1.0)  # early: the mean is not yet dominated by rare runs
    assert np.median(trace[-1]) < 0.5  # while the typical run has lost more than half its spread


def test_fresh_loop_mean_error_reaches_the_effective_sample_size():
    n_r, n_s, gens, runs = 100, 200, 25, 4000
    cfg = madloop.resolve(dict(loop="fresh", n_real=n_r, n_synth=n_s, gens=gens, runs=runs, seed=9, path="samples"))
    mean, _ = fitted(cfg, runs)
    err2 = ((mean[-5:] - 0.0) ** 2).sum(-1).ravel()  # last generations, all near the limit
    n_eff = n_r * (n_r + 2 * n_s) / (n_r + n_s)
    expected = np.trace(TRUTH_COV) / n_eff
    se = err2.std(ddof=1) / np.sqrt(runs)  # generations are correlated: count runs only
    assert abs(err2.mean() - expected) < 0.03 * expected + 4 * se
    # Synthetic data helps (n_eff > n_r), but less than as many real points would (n_eff < n_r + n_s).
    assert np.trace(TRUTH_COV) / (n_r + n_s) < err2.mean() < np.trace(TRUTH_COV) / n_r
