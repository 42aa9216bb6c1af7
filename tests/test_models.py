import numpy as np
import pytest

import madloop
from madloop.data import FileData, MixtureData
from madloop.models.gmm import GMM
from madloop.rng import RunRNG


def test_gmm_recovers_a_well_separated_mixture():
    source = MixtureData(layout="ring", k=4, radius=6.0, std=0.3)
    data = source.sample(800, RunRNG(0, range(0, 5), 0, "real"))
    model = GMM(k=4, iters=60).fit(data, RunRNG(0, range(0, 5), 1, "fit"))
    for run in range(5):
        # every true mean has a fitted mean nearby (EM may land in a local optimum, so allow one miss per run)
        d = np.linalg.norm(source.component_means[:, None] - model.mean[run][None], axis=-1).min(1)
        assert (d < 0.2).sum() >= 3
    np.testing.assert_allclose(model.weights.sum(1), 1.0)


def test_gmm_lam_scales_component_covariances():
    model = GMM(k=2, iters=30).fit(MixtureData(layout="ring", k=2, radius=5.0).sample(500, RunRNG(0, range(0, 1), 0, "r")),
                                   RunRNG(0, range(0, 1), 0, "f"))
    rng = lambda: RunRNG(0, range(0, 1), 0, "s")
    x1, x5 = model.sample(20000, rng(), 1.0).x[0], model.sample(20000, rng(), 0.5).x[0]
    # Same component draws and noise: the biased points sit sqrt(0.5) as far from their means.
    c = model.mean[0][np.argmin(np.linalg.norm(x1[:, None] - model.mean[0][None], axis=-1), axis=1)]
    assert np.linalg.norm(x5 - c, axis=1).mean() / np.linalg.norm(x1 - c, axis=1).mean() == pytest.approx(np.sqrt(0.5), rel=0.01)


def test_gmm_moments_match_its_samples():
    model = GMM(k=3).fit(MixtureData(layout="grid", k=9).sample(300, RunRNG(1, range(0, 2), 0, "r")), RunRNG(1, range(0, 2), 0, "f"))
    x = model.sample(100000, RunRNG(1, range(0, 2), 0, "s")).x
    mean, cov = model.moments()
    np.testing.assert_allclose(x.mean(1), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(x[0].T), cov[0], rtol=0.03, atol=0.05)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
def test_file_data_reads_point_clouds(tmp_path, suffix):
    points = np.random.default_rng(0).standard_normal((50, 3))
    path = tmp_path / f"cloud{suffix}"
    if suffix == ".npy":
        np.save(path, points)
    elif suffix == ".npz":
        np.savez(path, x=points)
    else:
        np.savetxt(path, points, delimiter=",", header="a,b,c", comments="")
    source = FileData(str(path))
    draws = source.sample(20, RunRNG(0, range(0, 3), 0, "real")).x
    assert draws.shape == (3, 20, 3)
    for run in draws:  # without replacement, from the file
        assert len({tuple(p) for p in run.round(8)}) == 20
        assert np.isin(run.round(8), points.round(8)).all()


def test_file_data_in_a_run_and_its_size_limit(tmp_path):
    np.save(tmp_path / "c.npy", np.random.default_rng(0).standard_normal((60, 2)))
    with pytest.raises(madloop.MadloopError, match="n_real=100 exceeds the 60 points"):
        madloop.resolve(dict(data="file", file=str(tmp_path / "c.npy")))
    result = madloop.run(out=tmp_path / "r", data="file", file=str(tmp_path / "c.npy"), n_real=40, n_synth=40, n_eval=50,
                         n_ref=60, runs=2, gens=2)
    assert len(result.table)


def test_gaussian_data_in_any_dimension():
    source = madloop.DATA["gaussian"](mean=(1.0, 2.0, 3.0), cov=((1.0, 0, 0), (0, 2.0, 0), (0, 0, 3.0)))
    x = source.sample(50000, RunRNG(0, range(0, 1), 0, "real")).x[0]
    np.testing.assert_allclose(x.mean(0), [1, 2, 3], atol=0.03)
    np.testing.assert_allclose(x.var(0), [1, 2, 3], rtol=0.03)
