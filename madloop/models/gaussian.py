"""Gaussian model family: closed-form maximum-likelihood fit, vectorised over runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from madloop.registry import MODELS
from madloop.rng import RunRNG
from madloop.samples import Samples


def psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """A square root A with A A^T = cov for a stack of symmetric PSD matrices (singular ones too)."""
    w, v = np.linalg.eigh(cov)
    return v * np.sqrt(np.clip(w, 0.0, None))[..., None, :]


def moments(x: np.ndarray, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-run mean (runs, d) and covariance (runs, d, d) of points x of shape (runs, n, d)."""
    mean = x.mean(axis=1)
    xc = x - mean[:, None, :]
    return mean, np.einsum("rni,rnj->rij", xc, xc) / (x.shape[1] - ddof)


@dataclass(frozen=True)
class GaussianModel:
    """N(mean, cov) per run; sampling with bias lam draws from N(mean, lam * cov)."""

    mean: np.ndarray  # (runs, d)
    cov: np.ndarray  # (runs, d, d)

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
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

    def fit(self, data: Samples, rng: RunRNG) -> GaussianModel:
        if len(data.item_shape) != 1:
            raise ValueError(f"the gaussian model needs points of shape (d,), got items of shape {data.item_shape}")
        mean, cov = moments(data.x, ddof=int(self.unbiased))
        return GaussianModel(mean, cov)
