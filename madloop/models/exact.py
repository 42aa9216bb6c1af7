"""The exact Gaussian path: a Gaussian fitted to Gaussian data needs only each set's sufficient statistics.

The maximum-likelihood fit of N(mu, Sigma) reads a training set through its size n, mean xbar and
scatter matrix S = sum_i (x_i - xbar)(x_i - xbar)^T. For m iid points from N(mu, Sigma) these are
independent, with

    xbar ~ N(mu, Sigma / m)        S ~ Wishart(m - 1, Sigma)  (Bartlett: S = L A A^T L^T, L L^T = Sigma)

so a generation draws (xbar, S) directly, at a cost per run that does not depend on m, and no point
ever exists. Synthetic sets drawn with sampling bias lam come from N(mu_t, lam Sigma_t) (SPEC section 2).
Every law of the sample path holds exactly; only the random numbers differ.

The draw also gives a lower-triangular factor B = L A of S (B B^T = S), and so of each fitted
covariance, which is carried along as ``root``: a generation multiplies triangular factors instead of
refactoring Sigma_t. That keeps log det Sigma_t = 2 sum_i log B_ii exact to rounding however far a run
has collapsed, where Sigma_t itself, once its condition number nears 1e16, no longer holds its small
eigenvalues (about 1 run in 2000 after 100 fits of n = 10 points in 2D).

Subsampling a pooled set to a budget is not a function of the statistics, so that case stays on the
sample path.

Real-data weighting gives each set a share of the objective: a set of n points with share W weighs
v = W / n per point. The weighted fit reads the total weight sum v, the weighted mean and the weighted
scatter sum v (x - xbar)(x - xbar)^T, which pool like the unweighted ones with the weights in place of the
counts (``Stats.weighted``, ``Stats.concat``); its covariance is the weighted scatter over sum v, or over
sum v - sum v^2 / sum v when unbiased (n - 1 for equal weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from madloop.data import GaussianData
from madloop.gaussian import mean_cov, psd_cholesky
from madloop.models.gaussian import GaussianModel
from madloop.rng import RunRNG
from madloop.samples import Samples


@dataclass(frozen=True)
class Stats:
    """The sufficient statistics of n points per run: mean (runs, d) and scatter (runs, d, d).

    ``root``: a lower-triangular B (runs, d, d) with B B^T = scatter, where the draw knows one.
    ``weight``, ``weight_sq``: the sum of the points' weights and of their squares, when the points carry
    weights (``weighted``); mean and scatter are then the weighted ones. None: one unit per point.
    """

    n: int
    mean: np.ndarray
    scatter: np.ndarray
    root: np.ndarray | None = None
    weight: float | None = None
    weight_sq: float | None = None

    def __post_init__(self):
        runs, d = self.mean.shape if self.mean.ndim == 2 else (-1, -1)
        if self.scatter.shape != (runs, d, d) or (self.root is not None and self.root.shape != (runs, d, d)):
            raise ValueError(f"stats need a mean (runs, d) and a scatter and root (runs, d, d), got {self.mean.shape} and {self.scatter.shape}")
        if not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise ValueError(f"stats need a positive number of points n, got {self.n!r}")

    @property
    def n_runs(self) -> int:
        return self.mean.shape[0]

    @staticmethod
    def of(x: np.ndarray) -> "Stats":
        """The statistics of points x of shape (runs, n, d)."""
        mean, cov = mean_cov(x)
        return Stats(x.shape[1], mean, cov * x.shape[1])

    def weighted(self, share: float) -> "Stats":
        """The statistics of these points each weighing share / n (the set carries ``share`` of the objective)."""
        v = share / self.n
        root = None if self.root is None else np.sqrt(v) * self.root
        return Stats(self.n, self.mean, v * self.scatter, root, share, share * v)

    @staticmethod
    def concat(parts: list["Stats"]) -> "Stats":
        """The statistics of the pooled sets, run by run (exact: the scatter gains each part's mean shift,
        weighted by the part's count, or by its weight when the parts carry weights)."""
        if len(parts) == 1:
            return parts[0]  # keeps the root
        weighted = [p.weight is not None for p in parts]
        if any(weighted) and not all(weighted):
            raise ValueError("cannot pool weighted and unweighted statistics")
        mass = [p.weight if p.weight is not None else p.n for p in parts]
        total = sum(mass)
        mean = sum(m * p.mean for m, p in zip(mass, parts)) / total
        shifts = [p.mean - mean for p in parts]
        scatter = sum(p.scatter + m * u[:, :, None] * u[:, None, :] for m, p, u in zip(mass, parts, shifts))
        if not all(weighted):
            return Stats(total, mean, scatter)
        return Stats(sum(p.n for p in parts), mean, scatter, None, total, sum(p.weight_sq for p in parts))


def bartlett(m: int, d: int, rng: RunRNG) -> np.ndarray:
    """A (runs, d, d) lower-triangular A with A A^T ~ Wishart(m - 1, I_d).

    A_ii^2 ~ chi2(m - i) for i = 1..d and A_ij ~ N(0, 1) below the diagonal. With m - 1 < d the Wishart
    is singular: columns i > m - 1 are zero.
    """
    df = m - np.arange(1, d + 1)
    rows, cols = np.tril_indices(d, -1)
    A = np.zeros((rng.n_runs, d, d))
    # One scalar-df draw per column: NumPy's chisquare is twice as fast without a df array.
    A[:, np.arange(d), np.arange(d)] = np.sqrt(np.concatenate([rng.chisquare(max(k, 1), 1) for k in df], axis=1))
    A[:, rows, cols] = rng.standard_normal(len(rows))
    return A * (df > 0)


def draw_stats(mean: np.ndarray, cov: np.ndarray, m: int, rng: RunRNG, root: np.ndarray | None = None) -> Stats:
    """The exact statistics of m iid points per run from N(mean_r, cov_r).

    mean is (runs, d) or (d,), cov (runs, d, d) or (d, d); cov may be singular. ``root``: a known
    lower-triangular L with L L^T = cov, used instead of factoring cov.
    """
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"need a positive number of points m, got {m!r}")
    mean = np.asarray(mean, dtype=float)
    d = mean.shape[-1]
    L = np.broadcast_to(psd_cholesky(cov) if root is None else root, (rng.n_runs, d, d))
    # xbar = mu + L z / sqrt(m).
    xbar = mean + np.einsum("rij,rj->ri", L, rng.standard_normal(d)) / np.sqrt(m)
    # S = B B^T with B = L A (a contiguous B^T makes the batched product twice as fast).
    B = L @ bartlett(m, d, rng)
    return Stats(int(m), xbar, B @ np.ascontiguousarray(np.swapaxes(B, -1, -2)), B)


@dataclass(frozen=True)
class StatsData:
    """A Gaussian data source on the exact path: ``sample`` draws the statistics of n real points per run."""

    source: GaussianData

    def __post_init__(self):
        if not isinstance(self.source, GaussianData):
            raise ValueError(f"the exact path needs Gaussian data (GaussianData), got {type(self.source).__name__}")

    @property
    def truth(self) -> tuple[np.ndarray, np.ndarray]:
        return self.source.truth

    def sample(self, n: int, rng: RunRNG) -> Stats:
        return draw_stats(*self.truth, n, rng)


@dataclass(frozen=True)
class StatsModel:
    """N(mean, cov) per run, like GaussianModel, whose training sets are statistics.

    ``sample`` returns the statistics of n points from N(mean, lam cov); ``sample_points`` materialises
    them (for metrics that need points).
    """

    mean: np.ndarray  # (runs, d)
    cov: np.ndarray  # (runs, d, d)
    root: np.ndarray | None = None  # lower-triangular, root root^T = cov, where known

    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Stats:
        root = None if self.root is None else np.sqrt(lam) * self.root
        return draw_stats(self.mean, lam * self.cov, n, rng, root)

    def sample_points(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        return GaussianModel(self.mean, self.cov).sample(n, rng, lam)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.cov

    def logdet(self) -> np.ndarray:
        """log det cov per run, from the triangular root where known (exact however singular cov gets)."""
        if self.root is None:
            return np.linalg.slogdet(self.cov)[1]
        with np.errstate(divide="ignore"):  # a zero pivot: a singular cov, log det = -inf
            return 2 * np.log(np.diagonal(self.root, axis1=-2, axis2=-1)).sum(-1)


@dataclass(frozen=True)
class ExactGaussian:
    """The ``gaussian`` model's fit from statistics: cov = S / n, or S / (n - 1) with ``unbiased=True``
    (weighted statistics: S / sum v, or S / (sum v - sum v^2 / sum v))."""

    unbiased: bool = False

    def fit(self, stats: Stats, rng: RunRNG) -> StatsModel:
        if stats.n <= self.unbiased:
            raise ValueError(f"the unbiased covariance needs at least 2 points per run, got {stats.n}")
        if stats.weight is None:
            scale = stats.n - self.unbiased
        else:
            scale = stats.weight - self.unbiased * stats.weight_sq / stats.weight
        root = None if stats.root is None else stats.root / np.sqrt(scale)
        return StatsModel(stats.mean, stats.scatter / scale, root)
