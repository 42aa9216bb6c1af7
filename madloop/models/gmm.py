"""Gaussian-mixture model family: EM with k components, all runs in one vectorised pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from madloop.models.gaussian import moments
from madloop.registry import MODELS
from madloop.rng import RunRNG
from madloop.samples import Samples


def component_log_density(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(x_n | mean_k, cov_k) for x (runs, n, d), mean (runs, k, d), cov (runs, k, d, d): (runs, n, k)."""
    chol = np.linalg.cholesky(cov)
    diff = x[:, None, :, :] - mean[:, :, None, :]  # (runs, k, n, d)
    # Whitened residuals: solve L z = diff for every component at once.
    z = np.linalg.solve(chol[:, :, None, :, :], diff[..., None])[..., 0]
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)  # (runs, k)
    d = x.shape[-1]
    log_p = -0.5 * ((z**2).sum(-1) + log_det[..., None] + d * np.log(2 * np.pi))
    return np.swapaxes(log_p, 1, 2)


def kmeans_pp(x: np.ndarray, k: int, rng: RunRNG) -> np.ndarray:
    """k-means++ seeds for every run at once: (runs, k, d)."""
    rows = np.arange(x.shape[0])
    u = rng.random(k)
    chosen = [x[rows, np.minimum((u[:, 0] * x.shape[1]).astype(int), x.shape[1] - 1)]]
    d2 = ((x - chosen[0][:, None]) ** 2).sum(-1)
    for j in range(1, k):
        cdf = np.cumsum(d2, axis=1)
        pick = (cdf < u[:, j : j + 1] * cdf[:, -1:]).sum(1)
        chosen.append(x[rows, np.minimum(pick, x.shape[1] - 1)])
        d2 = np.minimum(d2, ((x - chosen[-1][:, None]) ** 2).sum(-1))
    return np.stack(chosen, axis=1)


@dataclass(frozen=True)
class MixtureModel:
    """A Gaussian mixture per run; bias lam scales every component's covariance."""

    weights: np.ndarray  # (runs, k)
    mean: np.ndarray  # (runs, k, d)
    cov: np.ndarray  # (runs, k, d, d)

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        u = rng.random(n)
        cdf = np.cumsum(self.weights, axis=1)
        comp = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(-1), self.weights.shape[1] - 1)
        z = rng.standard_normal(n, self.mean.shape[2])
        chol = np.linalg.cholesky(lam * self.cov)
        rows = np.arange(self.weights.shape[0])[:, None]
        return Samples(self.mean[rows, comp] + np.einsum("rnij,rnj->rni", chol[rows, comp], z))

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        w = self.weights[..., None]
        mean = (w * self.mean).sum(1)
        second = (w[..., None] * (self.cov + np.einsum("rki,rkj->rkij", self.mean, self.mean))).sum(1)
        return mean, second - np.einsum("ri,rj->rij", mean, mean)


@MODELS.register("gmm")
@dataclass(frozen=True)
class GMM:
    """EM for a k-component mixture with full covariances.

    Initialisation: k-means++ seeding (each next mean is a training point drawn with probability
    proportional to its squared distance to the nearest mean so far), the run's covariance for every
    component, equal weights. A fixed number of EM iterations (no per-run early stop) keeps the pass
    vectorised and deterministic. ``reg`` is added to every covariance's diagonal.
    """

    k: int = 8
    iters: int = 100
    reg: float = 1e-6

    def __post_init__(self):
        if self.k < 1 or self.iters < 1:
            raise ValueError(f"gmm needs k >= 1 and iters >= 1, got k={self.k}, iters={self.iters}")

    def fit(self, data: Samples, rng: RunRNG) -> MixtureModel:
        x = data.x
        if x.ndim != 3:
            raise ValueError(f"the gmm model needs points of shape (d,), got items of shape {data.item_shape}")
        runs, n, d = x.shape
        if n < self.k:
            raise ValueError(f"gmm with k={self.k} needs at least k training points, got {n}")
        eye = self.reg * np.eye(d)
        mean = kmeans_pp(x, self.k, rng)
        cov = np.repeat((moments(x)[1] + eye)[:, None], self.k, axis=1)
        log_w = np.full((runs, self.k), -np.log(self.k))
        for _ in range(self.iters):
            # E step: responsibilities.
            log_r = log_w[:, None, :] + component_log_density(x, mean, cov)
            resp = np.exp(log_r - logsumexp(log_r, axis=2, keepdims=True))
            # M step: weighted moments; an empty component keeps a tiny mass instead of dividing by zero.
            nk = resp.sum(1) + 1e-10
            mean = np.einsum("rnk,rnd->rkd", resp, x) / nk[..., None]
            diff = x[:, None, :, :] - mean[:, :, None, :]
            cov = np.einsum("rnk,rkni,rknj->rkij", resp, diff, diff) / nk[..., None, None] + eye
            log_w = np.log(nk / n)
        return MixtureModel(np.exp(log_w - logsumexp(log_w, axis=1, keepdims=True)), mean, cov)
