"""The GAN family on known answers: the bias is a truncation of the latent (psi = lam), and a fit comes near a
Gaussian."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from madloop.metrics.sample import w2_exact  # noqa: E402
from madloop.models.gan import GAN, GANModel  # noqa: E402
from madloop.rng import RunRNG  # noqa: E402
from madloop.samples import Samples  # noqa: E402

COV = np.array([[2.0, 1.0], [1.0, 2.0]])


def rng(role: str, runs: int = 2) -> RunRNG:
    return RunRNG(5, range(runs), 1, role, total=runs)


@pytest.mark.parametrize("lam", [0.5, 0.8])
def test_truncation_scales_the_latent_by_lam(lam):
    """A linear generator x = W z + b: on the same noise, samples with bias lam are b + lam (samples at 1 - b)
    (psi = lam scales z; a sqrt(lam) temperature or a clipped latent would not give this)."""
    g = torch.Generator().manual_seed(0)
    generator = (torch.randn(2, 8, 2, generator=g), torch.randn(2, 1, 2, generator=g))
    model = GANModel(GAN(), generator, np.zeros((2, 1, 2)), np.full((2, 1, 2), 2.0))
    full, truncated = model.sample(500, rng("synth")).x, model.sample(500, rng("synth"), lam).x
    centre = 2.0 * generator[1].double().numpy()
    np.testing.assert_allclose(truncated - centre, lam * (full - centre), atol=1e-5)


def test_a_fitted_gan_comes_near_a_gaussian():
    x = rng("data").standard_normal(1000, 2) @ np.linalg.cholesky(COV).T
    ref = rng("ref").standard_normal(1000, 2) @ np.linalg.cholesky(COV).T
    model = GAN().fit(Samples(x), rng("fit"))
    s = model.sample(1000, rng("synth")).x
    for r in range(2):
        floor = w2_exact(x[r], ref[r])
        assert w2_exact(s[r], ref[r]) < 2 * floor  # measured 1.2-1.6x
        np.testing.assert_allclose(np.cov(s[r].T), COV, atol=0.6)
        np.testing.assert_allclose(s[r].mean(0), 0, atol=0.4)
    narrow = model.sample(1000, rng("synth"), 0.5).x
    assert np.all(np.trace(np.cov(narrow[0].T)) < 0.6 * np.trace(np.cov(s[0].T)))  # truncation narrows


def test_a_gan_refuses_what_it_cannot_model():
    with pytest.raises(ValueError, match="constant coordinate"):
        GAN(epochs=1).fit(Samples(np.stack([np.arange(10.0), np.ones(10)], -1)[None]), rng("fit", 1))
    for bad in (dict(latent=0), dict(epochs=1.5), dict(lr=0), dict(device="tpu")):
        with pytest.raises(ValueError):
            GAN(**bad)
