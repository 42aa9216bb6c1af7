import numpy as np
import ot
import pytest
import torch

from madloop.metrics import Evaluation, gaussian_w2, w2_1d_squared, w2_exact
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
