import numpy as np
import ot
import pytest
import torch

from madloop.gaussian import gaussian_w2, logdet, mean_cov, psd_cholesky, psd_sqrt, sym_sqrt
from madloop.metrics import Evaluation, Metric, register
from madloop.metrics.sample import w2_1d_squared, w2_exact
from madloop.registry import METRICS


def ev(samples, reference, seed=0):
    return Evaluation(samples, reference, None, np.random.default_rng(seed), threads=2)


def test_exact_w2_of_a_translation_is_the_shift():
    x = np.random.default_rng(0).standard_normal((50, 2))
    assert w2_exact(x, x) == pytest.approx(0, abs=1e-7)
    assert w2_exact(x + [3.0, 4.0], x) == pytest.approx(5.0)


def test_w2_metric_is_per_run():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((30, 2))
    samples = np.stack([ref, ref + [1.0, 0.0], ref + [0.0, 2.0]])
    np.testing.assert_allclose(METRICS["w2"](ev(samples, ref)), [0.0, 1.0, 2.0], atol=1e-7)


def test_1d_w2_with_unequal_sizes_matches_pot():
    rng = np.random.default_rng(2)
    x, y = np.sort(rng.standard_normal(7)), np.sort(rng.standard_normal(11) + 0.3)
    expected = ot.emd2(np.full(7, 1 / 7), np.full(11, 1 / 11), ot.dist(x[:, None], y[:, None]))
    assert w2_1d_squared(x[None, :, None], y[:, None])[0, 0] == pytest.approx(expected)
    got = w2_1d_squared(torch.as_tensor(x)[None, :, None], torch.as_tensor(y)[:, None])  # the GPU code path, on CPU
    assert float(got[0, 0]) == pytest.approx(expected)


def test_sliced_w2_in_1d_is_exact_w2():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((3, 20, 1)), rng.standard_normal((13, 1))
    np.testing.assert_allclose(METRICS["sliced_w2"](ev(x, y)), [w2_exact(run, y) for run in x])


def test_sliced_w2_of_a_translation_and_of_rotated_copies():
    rng = np.random.default_rng(5)
    y = rng.standard_normal((200, 2))
    # Shifting by c moves every 1D projection by <c, theta>: sliced W2^2 = mean over directions of <c, theta>^2.
    c = np.array([3.0, 0.0])
    theta = np.random.default_rng(0).standard_normal((2, 128))
    theta /= np.linalg.norm(theta, axis=0)
    expected = np.sqrt(((c @ theta) ** 2).mean())
    assert METRICS["sliced_w2"](ev((y + c)[None], y, seed=0))[0] == pytest.approx(expected)


def test_gaussian_w2_closed_form():
    # Commuting covariances: W2^2 = |m1 - m2|^2 + sum (sqrt a - sqrt b)^2.
    got = gaussian_w2(np.array([[1.0, 2.0]]), np.diag([4.0, 9.0])[None], np.zeros(2), np.diag([1.0, 1.0]))
    assert got[0] == pytest.approx(np.sqrt(5 + 1 + 4))
    # Against POT's Bures implementation for non-commuting ones.
    a = np.array([[2.0, 1.0], [1.0, 2.0]])
    b = np.array([[1.0, -0.3], [-0.3, 0.5]])
    ref = np.sqrt(ot.gaussian.bures_wasserstein_distance(np.zeros(2), np.ones(2), a, b) ** 2)
    assert gaussian_w2(np.zeros((1, 2)), a[None], np.ones(2), b)[0] == pytest.approx(ref, rel=1e-6)


def test_mean_and_cov_errors():
    ref = np.random.default_rng(4).standard_normal((100, 3))
    shifted = ref[None] + [0.0, 0.0, 2.0]
    assert METRICS["mean_err"](ev(shifted, ref))[0] == pytest.approx(2.0)
    assert METRICS["cov_err"](ev(shifted, ref))[0] == pytest.approx(0.0, abs=1e-12)
    assert METRICS["cov_err"](ev(2 * ref[None], ref))[0] > 0


def test_a_plain_metric_is_called_once_per_run_and_registered_as_a_record(monkeypatch):
    monkeypatch.setattr(METRICS, "_items", dict(METRICS._items))  # registered for this test only

    def spread(samples, reference):
        return float(np.abs(samples - reference.mean(0)).mean())

    assert register("test-spread", replace=True)(spread) is spread  # the function itself stays usable
    metric = METRICS["test-spread"]
    assert metric == Metric("test-spread", spread, batched=False, model=False, distance=True)
    ref = np.zeros((5, 2))
    samples = np.stack([np.ones((4, 2)), 3 * np.ones((4, 2))])
    np.testing.assert_array_equal(metric(ev(samples, ref)), [1.0, 3.0])


SAMPLE_METRICS = ("w2", "sliced_w2", "gauss_w2", "mean_err", "cov_err", "precision", "recall")
MODEL_METRICS = ("model_trace", "model_logdet", "true_w2", "true_kl", "true_kl_rev", "true_mean_err", "true_cov_err")


def test_built_in_metrics_say_what_they_measure():
    built_in = SAMPLE_METRICS + MODEL_METRICS
    assert [METRICS[name].model for name in built_in] == [False] * 7 + [True] * 7
    assert all(METRICS[name].batched and METRICS[name].name == name for name in built_in)
    # A MAD ratio E[d_t] / E[d_1] is for distances to p_r, not for the covariance's trace or log-determinant.
    assert [name for name in built_in if not METRICS[name].distance] == ["precision", "recall", "model_trace", "model_logdet"]


def test_the_three_covariance_factors_and_the_fit():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((5, 3, 3))
    u = rng.standard_normal((3, 1))
    cov = np.concatenate([a @ np.swapaxes(a, 1, 2), (u @ u.T)[None]])  # the last one singular
    root, chol, sym = psd_sqrt(cov), psd_cholesky(cov), sym_sqrt(cov)
    for factor in (root, chol):
        np.testing.assert_allclose(factor @ np.swapaxes(factor, 1, 2), cov, atol=1e-10)
    np.testing.assert_array_equal(chol, np.tril(chol))
    np.testing.assert_allclose(sym, np.swapaxes(sym, 1, 2), atol=1e-12)
    np.testing.assert_allclose(sym @ sym, cov, atol=1e-10)
    np.testing.assert_allclose(logdet(cov[:5]), np.linalg.slogdet(cov[:5])[1])
    np.testing.assert_allclose(logdet(cov[:5, :2, :2]), np.linalg.slogdet(cov[:5, :2, :2])[1])  # 2 x 2 closed form
    singular = [np.diag([1.0, 1.0, 0.0]), np.array([[1.0, 2.0], [2.0, 4.0]])]
    assert [logdet(c[None])[0] for c in singular] == [-np.inf, -np.inf]
    x = rng.standard_normal((2, 10, 3))
    mean, ml = mean_cov(x)
    np.testing.assert_allclose(mean, x.mean(1))
    np.testing.assert_allclose(ml[1], np.cov(x[1].T, bias=True))
    np.testing.assert_allclose(mean_cov(x, ddof=1)[1][1], np.cov(x[1].T))
