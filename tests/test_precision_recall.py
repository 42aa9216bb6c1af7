"""Precision and recall of k-nearest-neighbour manifolds (Kynkaanniemi et al. 2019, k = 3): known answers."""

import numpy as np
import pytest

from madloop.metrics import Evaluation
from madloop.metrics.knn import knn_radius2
from madloop.registry import METRICS


def precision_recall(samples, reference):
    ev = Evaluation(samples, reference, None, np.random.default_rng(0))
    return METRICS["precision"](ev), METRICS["recall"](ev)


def brute_force(x, ref, k=3):
    """One run, point by point, straight from the paper's definition."""
    def radius(points, i):
        d = np.sort(np.linalg.norm(points - points[i], axis=1))
        return d[k]  # d[0] = 0 is the point itself

    def inside(q, points):
        return any(np.linalg.norm(q - p) <= radius(points, j) for j, p in enumerate(points))

    return np.mean([inside(q, ref) for q in x]), np.mean([inside(r, x) for r in ref])


def test_identical_clouds_have_precision_and_recall_one():
    ref = np.random.default_rng(1).standard_normal((200, 2))
    p, r = precision_recall(ref[None], ref)
    assert p[0] == 1.0 and r[0] == 1.0


def test_a_far_away_cloud_has_precision_and_recall_zero():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((200, 2))
    p, r = precision_recall(rng.standard_normal((1, 150, 2)) + 100.0, ref)
    assert p[0] == 0.0 and r[0] == 0.0


def test_a_cloud_covering_half_the_reference_keeps_precision_and_halves_recall():
    # Reference: two far-apart blobs of equal mass; the samples: fresh points from one blob only.
    rng = np.random.default_rng(3)
    blob = lambda n: rng.standard_normal((n, 2))  # noqa: E731
    ref = np.concatenate([blob(500), blob(500) + [50.0, 0.0]])
    p, r = precision_recall(blob(500)[None], ref)
    assert p[0] > 0.95
    assert 0.45 < r[0] <= 0.5  # the other blob is unreachable: at most its 500 points are missed
    # The exact case: the samples are the reference's first blob itself.
    p, r = precision_recall(ref[None, :500], ref)
    assert p[0] == 1.0 and r[0] == 0.5


def test_shrunk_samples_keep_precision_but_lose_recall():
    # SPEC E2's signature of sampling bias: lam < 1 concentrates samples inside the support.
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((1000, 2))
    p1, r1 = precision_recall(rng.standard_normal((5, 1000, 2)), ref)
    p_lam, r_lam = precision_recall(np.sqrt(0.1) * rng.standard_normal((5, 1000, 2)), ref)
    assert (p1 > 0.95).all() and (p_lam > 0.95).all()
    assert (r1 > 0.95).all() and (r_lam < 0.7).all()


def test_vectorised_over_runs_matches_the_definition_run_by_run():
    rng = np.random.default_rng(5)
    ref = rng.standard_normal((40, 2))
    samples = rng.standard_normal((3, 30, 2)) * [[[0.5]], [[1.0]], [[2.0]]] + [[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 0.0]]]
    p, r = precision_recall(samples, ref)
    expected = np.array([brute_force(x, ref) for x in samples])
    np.testing.assert_allclose(p, expected[:, 0])
    np.testing.assert_allclose(r, expected[:, 1])


def test_slicing_the_runs_does_not_change_the_values(monkeypatch):
    rng = np.random.default_rng(6)
    ref, samples = rng.standard_normal((50, 3)), rng.standard_normal((7, 60, 3))
    whole = precision_recall(samples, ref)
    monkeypatch.setattr("madloop.metrics.knn.PAIRS_PER_SLICE", 1)  # one run per slice
    np.testing.assert_array_equal(precision_recall(samples, ref), whole)


def test_too_few_points_for_k_neighbours_fail_clearly():
    with pytest.raises(ValueError, match="need more than 3 points"):
        knn_radius2(np.zeros((3, 2)))
