"""The normalizing-flow family on known answers: an exact, normalised density whose bias is a temperature, an
invertible map whose log determinant is the Jacobian's, and a fit that recovers a Gaussian."""

import math

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")

from madloop.models.flow import Flow, FlowModel  # noqa: E402
from madloop.rng import RunRNG  # noqa: E402
from madloop.samples import Samples  # noqa: E402

COV = np.array([[2.0, 1.0], [1.0, 2.0]])


def rng(role: str, runs: int = 2) -> RunRNG:
    return RunRNG(5, range(runs), 1, role, total=runs)


def random_flow(runs: int = 2, d: int = 2) -> FlowModel:
    """A flow far from the identity: every weight drawn at random (a fit starts from zero last layers)."""
    spec = Flow(layers=4, width=16, depth=2)
    g = torch.Generator().manual_seed(0)
    params = tuple(tuple(torch.randn(runs, *shape, generator=g) * 0.25 for shape in
                         [(d, 16), (1, 16), (16, 16), (1, 16), (16, 2 * d), (1, 2 * d)]) for _ in range(spec.layers))
    return FlowModel(spec, params, np.full((runs, 1, d), 0.5), np.full((runs, 1, d), 1.5))


def test_the_inverse_undoes_the_map_and_the_log_determinant_is_the_jacobians():
    model = random_flow(runs=1)
    y = torch.randn(1, 5, 2, dtype=torch.float32)
    z, logdet = model.spec.forward(model.params, y)
    assert not torch.allclose(z, y)  # not the identity
    torch.testing.assert_close(model.spec.inverse(model.params, z), y, atol=1e-5, rtol=1e-5)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda p: model.spec.forward(model.params, p.view(1, 1, 2))[0].view(2),
                                                 y[0, i])
        assert logdet[0, i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-4)


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_the_density_integrates_to_one_at_every_temperature(lam):
    model = random_flow()
    grid = np.linspace(-25, 25, 501)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], -1)
    p = np.exp(model.log_prob(np.broadcast_to(points, (2, *points.shape)), lam))
    np.testing.assert_allclose(p.sum(1) * (grid[1] - grid[0]) ** 2, 1.0, atol=2e-3)
    # the temperature acts on z only: log p_lam - log p_1 = -d/2 log lam - |z|^2 (1/lam - 1) / 2
    y = torch.as_tensor((points[None] - model.shift) / model.scale, dtype=torch.float32)
    z = model.spec.forward(model.params, y)[0].double().numpy()
    expected = -math.log(lam) - 0.5 * (z**2).sum(-1) * (1 / lam - 1)
    np.testing.assert_allclose(model.log_prob(np.broadcast_to(points, (2, *points.shape)), lam)
                               - model.log_prob(np.broadcast_to(points, (2, *points.shape))), expected, atol=1e-6)


def test_a_fitted_flow_recovers_a_gaussian_and_samples_its_temperature():
    x = rng("data").standard_normal(1000, 2) @ np.linalg.cholesky(COV).T
    model = Flow(epochs=60).fit(Samples(x), rng("fit"))
    held = rng("held").standard_normal(2000, 2) @ np.linalg.cholesky(COV).T
    truth = stats.multivariate_normal(np.zeros(2), COV).logpdf(held).mean(1)
    assert np.all(np.abs(model.log_prob(held).mean(1) - truth) < 0.1)  # nats per point
    for lam, tolerance in ((1.0, 0.25), (0.5, 0.2)):  # a temperature scales the covariance exactly only for an
        s = model.sample(4000, rng("synth"), lam).x  # affine flow: a fitted one is nearly affine on Gaussian data
        for r in range(2):
            np.testing.assert_allclose(np.cov(s[r].T), lam * COV, atol=tolerance)


def test_a_flow_refuses_what_it_cannot_model():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        Flow(epochs=1).fit(Samples(np.ones((1, 10, 1)) * np.arange(10)[:, None]), rng("fit", 1))
    with pytest.raises(ValueError, match="constant coordinate"):
        Flow(epochs=1).fit(Samples(np.stack([np.arange(10.0), np.ones(10)], -1)[None]), rng("fit", 1))
    for bad in (dict(layers=0), dict(width=2.5), dict(lr=-1.0), dict(lr=float("nan")), dict(device="tpu")):
        with pytest.raises(ValueError):
            Flow(**bad)
