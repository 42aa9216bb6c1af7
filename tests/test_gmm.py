"""The mixture family's EM: early stopping, batch independence, monotone likelihood, the 2D closed form."""

import sys

import numpy as np
import pytest

import madloop
from madloop.cli import main
from madloop.data import MixtureData
from madloop.models import gmm
from madloop.models.gmm import (GMM, columns, e_step, em, gaussian_log_density, gaussian_log_density_2d, kmeans_pp,
                                m_step, seeding_draws)
from madloop.rng import RunRNG

RING = MixtureData(layout="ring", k=8)
CUBE = MixtureData(means=tuple(tuple(float(v) for v in np.binary_repr(i, 3)) for i in range(8)), std=0.2)  # 3D


def fit(spec, source, runs, n=300, rows=None, total=None):
    """Fit runs ``runs`` of a configuration of ``total`` runs; ``rows`` picks some of them (replayed alone)."""
    data = source.sample(n, RunRNG(0, runs, 0, "real", total=total))
    rng = RunRNG(0, runs, 1, "train", total=total)
    if rows is not None:
        data, rng = data.runs(list(rows)), rng.subset(rows)
    return spec.fit(data, rng), data


def poor_start(xt, k, seed):
    """Equal weights, k-means++ seeds, every component at the data's covariance: EM has far to climb."""
    runs = len(xt)
    xc = xt - xt.mean(2, keepdims=True)
    cov = np.repeat((xc @ np.swapaxes(xc, 1, 2) / xt.shape[2])[:, None], k, axis=1)
    return np.full((runs, k), -np.log(k)), kmeans_pp(xt, seeding_draws(RunRNG(seed, range(0, runs), 1, "seed"), k)), cov


def test_each_run_stops_at_convergence():
    model, _ = fit(GMM(k=8), RING, range(0, 8))
    assert (model.iters < 100).all() and len(set(model.iters)) > 1  # runs stopped, and not all together
    assert (fit(GMM(k=8, tol=0.0, iters=7), RING, range(0, 8))[0].iters == 7).all()


@pytest.mark.parametrize("source", [RING, CUBE], ids=["2d", "3d"])
def test_a_run_fits_the_same_alone_in_any_batch_block_or_chunk(source, monkeypatch):
    spec = GMM(k=8, tol=1e-4)
    batch, _ = fit(spec, source, range(0, 6))
    assert len(set(batch.iters)) > 1  # runs left the batch at different iterations
    fields = ("weights", "mean", "cov", "iters")
    alone = [fit(spec, source, range(0, 6), rows=[run])[0] for run in range(6)]
    chunk, _ = fit(spec, source, range(2, 5), total=6)
    monkeypatch.setattr(gmm, "BLOCK", 2 * 8 * 300)  # blocks of two runs
    blocked, _ = fit(spec, source, range(0, 6))
    for name in fields:
        np.testing.assert_array_equal(np.concatenate([getattr(m, name) for m in alone]), getattr(batch, name))
        np.testing.assert_array_equal(getattr(chunk, name), getattr(batch, name)[2:5])
        np.testing.assert_array_equal(getattr(blocked, name), getattr(batch, name))


@pytest.mark.parametrize("source", [RING, CUBE], ids=["2d", "3d"])
def test_em_never_lowers_the_likelihood(source):
    xt = columns(source.sample(200, RunRNG(3, range(0, 4), 0, "real")).x)
    log_w, mean, cov = poor_start(xt, 8, seed=3)
    ells = []
    for _ in range(60):
        ell, resp = e_step(xt, log_w, mean, cov)
        log_w, mean, cov = m_step(xt, resp, 1e-6)
        ells.append(ell)
    steps = np.diff(np.array(ells), axis=0)
    assert (steps >= -1e-12).all() and (steps.sum(0) > 0.1).all()


def test_the_2d_closed_form_matches_the_cholesky_path():
    g = np.random.default_rng(0)
    a = g.standard_normal((5, 7, 2, 2))
    cov = a @ np.swapaxes(a, 2, 3) + 0.01 * np.eye(2)
    xt, mean = 3 * g.standard_normal((5, 2, 40)), g.standard_normal((5, 7, 2))
    np.testing.assert_allclose(gaussian_log_density_2d(xt, mean, cov), gaussian_log_density(xt, mean, cov),
                               rtol=1e-12, atol=1e-12)


def test_em_takes_scikit_learns_steps():
    mixture = pytest.importorskip("sklearn.mixture")
    x = RING.sample(500, RunRNG(0, range(0, 3), 0, "real")).x
    start = poor_start(columns(x), 8, seed=0)
    log_w, mean, cov, used = em(columns(x), *start, reg=1e-6, tol=1e-3, iters=100)
    assert (used > 10).all()
    for run in range(3):
        ref = mixture.GaussianMixture(8, tol=1e-3, reg_covar=1e-6, init_params="random_from_data", random_state=0,
                                      weights_init=np.full(8, 1 / 8), means_init=start[1][run],
                                      precisions_init=np.linalg.inv(start[2][run])).fit(x[run])
        assert ref.n_iter_ == used[run]
        np.testing.assert_allclose(mean[run], ref.means_, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(cov[run], ref.covariances_, rtol=1e-8, atol=1e-10)


def test_more_components_than_points_is_one_clear_error(monkeypatch, capsys, tmp_path):
    with pytest.raises(madloop.MadloopError, match="k=50 components needs at least 50 training points per run, got 20"):
        GMM(k=50).fit(RING.sample(20, RunRNG(0, range(0, 2), 0, "real")), RunRNG(0, range(0, 2), 1, "train"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["madloop", "run", "--data", "mixture", "--model", "gmm", "--model.k", "50",
                                      "--n-real", "20", "--runs", "2", "--gens", "2", "--no-progress", "--no-plot",
                                      "--out", "out"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and err[-1].startswith("error: model 'gmm' needs at least 50 training points")
    assert "Traceback" not in "\n".join(err) and not (tmp_path / "out").exists()  # refused before anything is written
