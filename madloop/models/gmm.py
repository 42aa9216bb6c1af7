"""Gaussian-mixture model family: EM with k components, vectorised over runs.

The model is p(x) = sum_k w_k N(x | mu_k, Sigma_k). One EM iteration (Dempster, Laird and Rubin 1977):

    E step:  r_kn = w_k N(x_n | mu_k, Sigma_k) / sum_j w_j N(x_n | mu_j, Sigma_j)
             ell  = (1/n) sum_n log sum_k w_k N(x_n | mu_k, Sigma_k)     (mean log-likelihood per point)
    M step:  n_k = sum_n r_kn,   w_k = n_k / n,   mu_k = sum_n r_kn x_n / n_k,
             Sigma_k = sum_n r_kn (x_n - mu_k)(x_n - mu_k)^T / n_k + reg I

ell never decreases from one iteration to the next. A run stops once its ell changes by less than ``tol``
(scikit-learn's GaussianMixture rule, so from the same start the two take the same steps), or after
``iters`` iterations. A stopped run leaves the batch: the others go on without it, and each run's result
is the one it would get if fitted alone, however runs are chunked or blocked.

EM starts where scikit-learn's does by default: k-means++ seeds (greedy, as in scikit-learn), refined by
Lloyd's k-means, then one M step on the hard cluster assignments. From there EM needs a few iterations,
and ends higher than a hundred iterations from madloop's former start (every component at the data's
covariance) did.

Weighted fit (real-data weighting): with per-point weights scaled to v_n = n w_n / sum w (so that sum v = n),
every sum over points above weighs point n by v_n (r_kn -> v_n r_kn, ell -> (1/n) sum_n v_n log ...), and so
do the k-means++ draws, Lloyd's means and the first M step: integer weights give the fit of the data with
each point repeated v_n times. Without weights the arithmetic is the unweighted one.

Inside, a run's points are the columns of an array xt (runs, d, n) and per-point quantities are
(runs, k, n), so that every sum over points runs along contiguous memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import logsumexp

from madloop.errors import MadloopError
from madloop.gaussian import gaussian_log_density, gaussian_log_density_2d, mixture_log_density
from madloop.models.base import check_points, check_sampling
from madloop.registry import MODELS
from madloop.rng import RunRNG
from madloop.samples import Samples

LLOYD_ITERS = 300  # scikit-learn's KMeans cap
BLOCK = 2**15  # numbers in a (runs, k, n) array of one block of runs: small enough to stay in a CPU cache


def e_step(xt: np.ndarray, log_w: np.ndarray, mean: np.ndarray, cov: np.ndarray,
           v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities r (runs, k, n) and the mean log-likelihood ell (runs,) of the parameters given
    (weighted by the point weights v (runs, n), if given)."""
    log_density = gaussian_log_density_2d if xt.shape[1] == 2 else gaussian_log_density
    log_p = log_w[..., None] + log_density(xt, mean, cov)
    top = log_p.max(1, keepdims=True)
    p = np.exp(log_p - top)
    total = p.sum(1, keepdims=True)
    ell = (top + np.log(total))[:, 0]
    return (ell if v is None else v * ell).mean(-1), p / total


def m_step(xt: np.ndarray, resp: np.ndarray, reg: float,
           v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted moments: log weights (runs, k), means (runs, k, d), covariances (runs, k, d, d); the
    responsibilities are weighed by the point weights v (runs, n), if given."""
    if v is not None:
        resp = resp * v[:, None, :]
    nk = resp.sum(-1) + 1e-10  # an empty component keeps a tiny mass instead of dividing by zero
    mean = resp @ np.swapaxes(xt, 1, 2) / nk[..., None]
    diff = xt[:, None] - mean[..., None]  # (runs, k, d, n)
    cov = (resp[:, :, None] * diff) @ np.swapaxes(diff, 2, 3) / nk[..., None, None]
    return np.log(nk / xt.shape[2]), mean, cov + reg * np.eye(xt.shape[1])


def em(xt: np.ndarray, log_w: np.ndarray, mean: np.ndarray, cov: np.ndarray, reg: float, tol: float,
       iters: int, v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """EM from the given parameters until each run's ell changes by less than tol, or ``iters`` times
    (points weighed by v (runs, n), if given).

    Returns the final parameters and the number of iterations each run used. Only the runs still going
    are computed (converged ones leave the batch), so no run's numbers depend on the others'.
    """
    log_w, mean, cov = log_w.copy(), mean.copy(), cov.copy()
    ell = np.full(xt.shape[0], -np.inf)
    used = np.zeros(xt.shape[0], dtype=int)
    live, xt_live, v_live = np.arange(xt.shape[0]), xt, v
    for it in range(1, iters + 1):
        ell_live, resp = e_step(xt_live, log_w[live], mean[live], cov[live], v_live)
        log_w[live], mean[live], cov[live] = m_step(xt_live, resp, reg, v_live)
        used[live] = it
        # Stopping rule: the change of ell, measured before this iteration's M step (as scikit-learn).
        going = ~(np.abs(ell_live - ell[live]) < tol)
        ell[live] = ell_live
        if not going.all():
            live = live[going]
            if not live.size:
                break
            xt_live, v_live = xt[live], None if v is None else v[live]
    return log_w, mean, cov, used


def squared_distances(xt: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """|x_n - c_j|^2 for points xt (runs, d, n) and centers (runs, j, d): (runs, j, n)."""
    diff = xt[:, None] - centers[..., None]
    return (diff * diff).sum(2)


def seeding_draws(rng: RunRNG, k: int) -> np.ndarray:
    """The uniform numbers kmeans_pp uses: (runs, k, 2 + log k)."""
    return rng.random(k, 2 + int(np.log(k)))


def kmeans_pp(xt: np.ndarray, u: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
    """Greedy k-means++ seeds for every run at once, from the uniform numbers u = seeding_draws(): (runs, k, d).

    The first seed is a uniformly drawn point; each next one is the best (lowest sum of squared distances
    to the nearest seed) of 2 + log k candidates, each drawn with probability proportional to its squared
    distance to the nearest seed so far (Arthur and Vassilvitskii 2007; scikit-learn's choice of trials).
    With point weights v (runs, n) every draw and sum weighs each point by its weight.
    """
    runs, _, n = xt.shape
    points, rows = np.swapaxes(xt, 1, 2), np.arange(runs)
    if v is None:
        first = (u[:, 0, 0] * n).astype(int)
    else:
        cdf = np.cumsum(v, axis=1)
        first = (cdf < u[:, 0, :1] * cdf[:, -1:]).sum(-1)
    seeds = [points[rows, np.minimum(first, n - 1)]]
    d2 = squared_distances(xt, seeds[0][:, None])[:, 0]  # (runs, n)
    for j in range(1, u.shape[1]):
        cdf = np.cumsum(d2 if v is None else v * d2, axis=1)
        pick = np.minimum((cdf[:, None, :] < u[:, j, :, None] * cdf[:, None, -1:]).sum(-1), n - 1)  # (runs, trials)
        near = np.minimum(d2[:, None], squared_distances(xt, points[rows[:, None], pick]))  # (runs, trials, n)
        best = (near if v is None else v[:, None] * near).sum(-1).argmin(1)
        seeds.append(points[rows, pick[rows, best]])
        d2 = near[rows, best]
    return np.stack(seeds, axis=1)


def kmeans(xt: np.ndarray, centers: np.ndarray, iters: int = LLOYD_ITERS, v: np.ndarray | None = None) -> np.ndarray:
    """Lloyd's algorithm: the cluster of every point (runs, n) once no point changes cluster (or after iters);
    with point weights v (runs, n) each center moves to its cluster's weighted mean.

    A run whose clusters no longer change is a fixed point (its centers are recomputed to the same
    numbers), so iterating it further while other runs go on changes nothing.
    """
    k = centers.shape[1]
    labels = squared_distances(xt, centers).argmin(1)
    for _ in range(iters):
        member = labels[:, None, :] == np.arange(k)[:, None]  # (runs, k, n)
        if v is not None:
            member = member * v[:, None, :]
        size = member.sum(-1)[..., None]
        # Each center moves to its cluster's mean; an empty cluster's center stays.
        centers = np.where(size > 0, member @ np.swapaxes(xt, 1, 2) / np.where(size > 0, size, 1), centers)
        labels, previous = squared_distances(xt, centers).argmin(1), labels
        if (labels == previous).all():
            break
    return labels


def initial_params(xt: np.ndarray, u: np.ndarray, reg: float,
                   v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM's start: the M step on k-means clusters grown from k-means++ seeds (scikit-learn's default)."""
    labels = kmeans(xt, kmeans_pp(xt, u, v), v=v)
    return m_step(xt, (labels[:, None, :] == np.arange(u.shape[1])[:, None]).astype(float), reg, v)


def columns(x: np.ndarray) -> np.ndarray:
    """Points (runs, n, d) as the columns of a contiguous (runs, d, n) array."""
    return np.ascontiguousarray(np.swapaxes(x, 1, 2))


@dataclass(frozen=True)
class MixtureModel:
    """A Gaussian mixture per run; bias lam scales every component's covariance."""

    weights: np.ndarray  # (runs, k)
    mean: np.ndarray  # (runs, k, d)
    cov: np.ndarray  # (runs, k, d, d)
    iters: np.ndarray  # (runs,) EM iterations each run's fit used

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        check_sampling(lam, rng, self.weights.shape[0])
        u = rng.random(n)
        cdf = np.cumsum(self.weights, axis=1)
        comp = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(-1), self.weights.shape[1] - 1)
        z = rng.standard_normal(n, self.mean.shape[2])
        chol = np.linalg.cholesky(lam * self.cov)
        rows = np.arange(self.weights.shape[0])[:, None]
        return Samples(self.mean[rows, comp] + np.einsum("rnij,rnj->rni", chol[rows, comp], z))

    def log_prob(self, x: np.ndarray, lam: float = 1.0) -> np.ndarray:
        """log density (runs, n) of points x (runs, n, d) under each run's mixture drawn with bias lam."""
        return mixture_log_density(x, np.log(self.weights), self.mean, lam * self.cov)

    def log_likelihood(self, data: Samples) -> np.ndarray:
        """The mean log-density of each run's points under that run's mixture: (runs,)."""
        return e_step(columns(data.x), np.log(self.weights), self.mean, self.cov)[0]

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        w = self.weights[..., None]
        mean = (w * self.mean).sum(1)
        second = (w[..., None] * (self.cov + np.einsum("rki,rkj->rkij", self.mean, self.mean))).sum(1)
        return mean, second - np.einsum("ri,rj->rij", mean, mean)


@MODELS.register("gmm")
@dataclass(frozen=True)
class GMM:
    """EM for a k-component mixture with full covariances, from k-means (the module docstring gives the steps).

    A run stops when its mean log-likelihood per point changes by less than ``tol`` (scikit-learn's
    default 1e-3), or after ``iters`` iterations; ``tol=0`` runs all ``iters``. ``reg`` is added to every
    covariance's diagonal.
    """

    k: int = 8
    iters: int = 100
    tol: float = 1e-3
    reg: float = 1e-6
    # Fits read per-sample weights (Samples.w): weighted EM; fitted models give log_prob.
    capabilities: ClassVar[frozenset[str]] = frozenset({"weighted", "density"})

    def __post_init__(self):
        if self.k < 1 or self.iters < 1 or self.tol < 0:
            raise ValueError(f"gmm needs k >= 1, iters >= 1 and tol >= 0, "
                             f"got k={self.k}, iters={self.iters}, tol={self.tol}")

    @property
    def min_points(self) -> int:
        """The fewest training points per run a fit accepts: one per component."""
        return self.k

    def fit(self, data: Samples, rng: RunRNG) -> MixtureModel:
        check_points("gmm", data, rng)
        if data.n < self.min_points:
            raise MadloopError(f"gmm with k={self.k} components needs at least {self.min_points} training points "
                               f"per run, got {data.n}: lower model.k or raise n_real / n_synth")
        xt, u = columns(data.x), seeding_draws(rng, self.k)
        v = None if data.w is None else data.n * data.w / data.w.sum(1, keepdims=True)
        # Runs go through in blocks that fit in a cache: twice as fast as all at once, and the same numbers.
        size, parts = max(1, BLOCK // (self.k * data.n)), []
        for s in range(0, len(xt), size):
            block, vb = xt[s : s + size], None if v is None else v[s : s + size]
            start = initial_params(block, u[s : s + size], self.reg, vb)
            parts.append(em(block, *start, self.reg, self.tol, self.iters, vb))
        log_w, mean, cov, used = (np.concatenate(a) for a in zip(*parts))
        return MixtureModel(np.exp(log_w - logsumexp(log_w, axis=1, keepdims=True)), mean, cov, used)
