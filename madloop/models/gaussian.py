"""Gaussian model family: closed-form maximum-likelihood fit, vectorised over runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from madloop.gaussian import mean_cov, mixture_log_density, psd_sqrt
from madloop.models.base import check_points, check_sampling
from madloop.registry import MODELS
from madloop.rng import RunRNG
from madloop.samples import Samples

@dataclass(frozen=True)
class GaussianModel:
    """N(mean, cov) per run; sampling with bias lam draws from N(mean, lam * cov)."""

    mean: np.ndarray  # (runs, d)
    cov: np.ndarray  # (runs, d, d)

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        check_sampling(lam, rng, len(self.mean))
        z = rng.standard_normal(n, self.mean.shape[1])
        a = psd_sqrt(lam * self.cov)
        return Samples(self.mean[:, None, :] + z @ np.swapaxes(a, 1, 2))

    def log_prob(self, x: np.ndarray, lam: float = 1.0) -> np.ndarray:
        """log density (runs, n) of points x (runs, n, d) under N(mean, lam * cov), each run its own."""
        return mixture_log_density(x, np.zeros((len(self.mean), 1)), self.mean[:, None], lam * self.cov[:, None])

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.cov


@MODELS.register("gaussian")
@dataclass(frozen=True)
class Gaussian:
    """Maximum-likelihood fit (covariance divides by n); ``unbiased=True`` divides by n - 1.

    With per-sample weights (real-data weighting) the fit is the weighted maximum-likelihood one
    (madloop.gaussian.mean_cov).
    """

    unbiased: bool = False
    min_points = 2  # the fewest training points per run whose covariance is not zero
    # Fits read per-sample weights (Samples.w): weighted mean and covariance; fitted models give log_prob.
    capabilities: ClassVar[frozenset[str]] = frozenset({"weighted", "density"})

    def fit(self, data: Samples, rng: RunRNG) -> GaussianModel:
        check_points("gaussian", data, rng)
        mean, cov = mean_cov(data.x, ddof=int(self.unbiased), w=data.w)
        return GaussianModel(mean, cov)
