"""Real-data sources: a draw of n points per run from p_r, vectorised over runs.

Sources that know p_r in closed form also give its log density ``log_prob(x)`` and its score
``score(x)`` = grad log p_r(x) for points x (runs, n, d): curation and self-correction use them
(madloop/remedies.py).
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from madloop.gaussian import component_log_densities, mixture_log_density, psd_sqrt
from madloop.registry import DATA
from madloop.rng import RunRNG
from madloop.samples import Samples

register = DATA.register


@register("gaussian")
@dataclass(frozen=True)
class GaussianData:
    """p_r = N(mean, cov) in any dimension; the default is SPEC E1's 2D Gaussian."""

    mean: tuple[float, ...] = (0.0, 0.0)
    cov: tuple[tuple[float, ...], ...] = ((2.0, 1.0), (1.0, 2.0))

    def __post_init__(self):
        mean, cov = np.asarray(self.mean, float), np.asarray(self.cov, float)
        d = mean.shape[0] if mean.ndim == 1 else -1
        if mean.ndim != 1 or cov.shape != (d, d):
            raise ValueError(f"gaussian data needs a mean of length d and a d x d cov, got {mean.shape} and {cov.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise ValueError(f"gaussian data needs a finite mean and cov, got mean={self.mean} and cov={self.cov}")
        if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError("gaussian data needs a symmetric positive-definite cov")

    @property
    def truth(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.mean, float), np.asarray(self.cov, float)

    def sample(self, n: int, rng: RunRNG) -> Samples:
        mean, cov = self.truth
        return Samples(mean + rng.standard_normal(n, len(mean)) @ psd_sqrt(cov).T)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        mean, cov = self.truth
        return mixture_log_density(x, np.zeros((1, 1)), mean[None, None], cov[None, None])

    def score(self, x: np.ndarray) -> np.ndarray:
        """-Sigma^-1 (x - mu)."""
        mean, cov = self.truth
        return -(x - mean) @ np.linalg.inv(cov)


@register("mixture")
@dataclass(frozen=True)
class MixtureData:
    """A Gaussian mixture with isotropic components of standard deviation ``std``.

    ``layout="ring"``: k means evenly spaced on a circle of radius ``radius``; ``layout="grid"``: a
    sqrt(k) x sqrt(k) grid spanning [-radius, radius]^2; ``means``: custom means (any dimension),
    which override the layout. ``weights`` default to equal.
    """

    layout: str = "ring"
    k: int = 8
    radius: float = 4.0
    std: float = 0.5
    means: tuple[tuple[float, ...], ...] | None = None
    weights: tuple[float, ...] | None = None

    def __post_init__(self):
        if not (0 < self.std < np.inf and 0 < self.radius < np.inf and self.k >= 1):
            raise ValueError(f"mixture needs a finite std > 0 and radius > 0, and k >= 1; got std={self.std}, "
                             f"radius={self.radius}, k={self.k}")
        if self.means is None and self.layout not in ("ring", "grid"):
            raise ValueError(f"mixture layout must be 'ring' or 'grid', got '{self.layout}'")
        if self.means is None and self.layout == "grid" and round(self.k**0.5) ** 2 != self.k:
            raise ValueError(f"a grid mixture needs a square number of components, got k={self.k}")
        if self.means is not None and not np.isfinite(self.component_means).all():
            raise ValueError(f"mixture means must be finite, got {self.means}")
        w = self.component_weights
        if len(w) != len(self.component_means) or (w < 0).any() or not np.isclose(w.sum(), 1.0):
            raise ValueError("mixture weights must be one non-negative number per component, summing to 1")

    @property
    def component_means(self) -> np.ndarray:
        if self.means is not None:
            return np.asarray(self.means, float)
        if self.layout == "ring":
            angle = 2 * np.pi * np.arange(self.k) / self.k
            return self.radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        side = np.linspace(-self.radius, self.radius, round(self.k**0.5))
        return np.stack(np.meshgrid(side, side, indexing="ij"), axis=-1).reshape(-1, 2)

    @property
    def component_weights(self) -> np.ndarray:
        k = len(self.component_means)
        return np.full(k, 1.0 / k) if self.weights is None else np.asarray(self.weights, float)

    def _components(self, x: np.ndarray) -> np.ndarray:
        """log w_k + log N(x | mu_k, std^2 I): (runs, k, n)."""
        means = self.component_means
        cov = self.std**2 * np.eye(means.shape[1])
        return component_log_densities(x, np.log(self.component_weights)[None], means[None],
                                       np.broadcast_to(cov, (1, len(means), *cov.shape)))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        return logsumexp(self._components(x), axis=1)

    @property
    def classes(self) -> int:
        """The number of labels ``label`` gives: one per component."""
        return len(self.component_means)

    def label(self, x: np.ndarray) -> np.ndarray:
        """Each point's most likely component (runs, n): the class that SIMS's distribution control curates by."""
        return self._components(x).argmax(axis=1)

    def score(self, x: np.ndarray) -> np.ndarray:
        """sum_k r_k(x) (mu_k - x) / std^2, r_k(x) the posterior of component k."""
        log_p = self._components(x)
        r = np.exp(log_p - logsumexp(log_p, axis=1, keepdims=True))
        return (np.einsum("rkn,kd->rnd", r, self.component_means) - x) / self.std**2

    def sample(self, n: int, rng: RunRNG) -> Samples:
        means, cdf = self.component_means, np.cumsum(self.component_weights)
        comp = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)
        return Samples(means[comp] + self.std * rng.standard_normal(n, means.shape[1]))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz archive, or a ValueError that says the file is damaged.

    A file that is not a zip archive makes np.load fall back to pickle and refuse it ("pickled (object)
    data"), which would send a user looking for the wrong problem; a truncated archive fails deep in zipfile.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz archive (a zip file): it is corrupted, truncated or of another format")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path} is a damaged .npz archive ({err})") from None


def read_points(path: str | Path) -> np.ndarray:
    """An (N, d) float array from .npy, .npz (its only array, or the one named 'x') or .csv (header allowed)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist")
    try:
        if path.suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            arrays = read_npz(path)
            if len(arrays) != 1 and "x" not in arrays:
                raise ValueError(f"{path} holds arrays {sorted(arrays)}: name the points 'x' or keep one array")
            x = arrays["x"] if "x" in arrays else next(iter(arrays.values()))
        elif path.suffix == ".csv":
            x = np.genfromtxt(path, delimiter=",", dtype=float)
            if x.ndim == 2 and np.isnan(x[0]).all():  # a header row
                x = x[1:]
        else:
            raise ValueError(f"data file {path} must end in .npy, .npz or .csv")
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read points from {path}: {err}") from None
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) < 2 or not np.isfinite(x).all():
        raise ValueError(f"{path} must hold a finite (N, d) array of at least 2 points, got shape {x.shape}")
    return x


@register("file")
@dataclass(frozen=True)
class FileData:
    """A user point cloud; each run draws its n points without replacement from the N in the file."""

    file: str = ""

    def __post_init__(self):
        if not self.file:
            raise ValueError("needs --file pointing to a .npy, .npz or .csv point cloud")
        object.__setattr__(self, "_points", read_points(self.file))

    @property
    def available(self) -> int:
        """How many points a run may draw (without replacement)."""
        return len(self._points)

    def sample(self, n: int, rng: RunRNG) -> Samples:
        if n > self.available:
            raise ValueError(f"cannot draw {n} points without replacement from the {self.available} in {self.file}")
        return Samples(self._points[rng.permutations(self.available, n)])
