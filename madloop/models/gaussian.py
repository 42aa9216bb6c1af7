"""Gaussian model family: closed-form maximum-likelihood fit, vectorised over runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from madloop.errors import MadloopError
from madloop.gaussian import mean_cov, psd_sqrt
from madloop.registry import MODELS
from madloop.rng import RunRNG
from madloop.samples import Samples

@dataclass(frozen=True)
class GaussianModel:
    """N(mean, cov) per run; sampling with bias lam draws from N(mean, lam * cov)."""

    mean: np.ndarray  # (runs, d)
    cov: np.ndarray  # (runs, d, d)

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        if not 0 < lam <= 1:
            raise MadloopError(f"the sampling bias lam must be in (0, 1], got {lam}")
        if rng.n_runs != len(self.mean):
            raise MadloopError(f"the random stream has {rng.n_runs} runs but the model has {len(self.mean)}")
        z = rng.standard_normal(n, self.mean.shape[1])
        a = psd_sqrt(lam * self.cov)
        return Samples(self.mean[:, None, :] + z @ np.swapaxes(a, 1, 2))

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.cov


@MODELS.register("gaussian")
@dataclass(frozen=True)
class Gaussian:
    """Maximum-likelihood fit (covariance divides by n); ``unbiased=True`` divides by n - 1."""

    unbiased: bool = False
    min_points = 2  # the fewest training points per run whose covariance is not zero

    def fit(self, data: Samples, rng: RunRNG) -> GaussianModel:
        if len(data.item_shape) != 1:
            raise MadloopError(f"the gaussian model needs points of shape (d,), got items of shape {data.item_shape}")
        mean, cov = mean_cov(data.x, ddof=int(self.unbiased))
        return GaussianModel(mean, cov)
