"""Sample metrics: distances between each run's generated samples and the real reference sample.

W2 below is the 2-Wasserstein distance itself (not its square). POT and torch (which POT imports) are
imported by the metrics that use them, so importing madloop does not pay their seconds of start-up.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from madloop.gaussian import gaussian_w2, mean_cov
from madloop.metrics.base import Evaluation, register
from madloop.metrics.image import feature_notes, feature_points
from madloop.metrics.knn import by_slices_of_runs, coverage, knn_radius2


def w2_exact(x: np.ndarray, y: np.ndarray) -> float:
    """Exact W2 between two empirical point clouds with uniform weights (POT emd2, squared Euclidean cost)."""
    import ot

    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    return float(np.sqrt(max(ot.emd2(a, b, ot.dist(x, y, metric="sqeuclidean"), numItermax=10**7), 0.0)))


@register("w2", batched=True)
def w2(ev: Evaluation) -> np.ndarray:
    """Exact empirical W2, one optimal-transport problem per run (POT releases the GIL: threads help)."""
    y = ev.reference_points
    with ThreadPoolExecutor(ev.threads) as pool:
        return np.array(list(pool.map(lambda x: w2_exact(x, y), ev.points)))


def quantile_grid(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where two empirical quantile functions (n and m points) are both constant: the merged breakpoints
    {i/n} U {j/m}. Returns, per piece, the index into each sorted sample and the piece's width."""
    u = np.union1d(np.arange(n + 1) / n, np.arange(m + 1) / m)
    mid = (u[1:] + u[:-1]) / 2
    return np.minimum((mid * n).astype(int), n - 1), np.minimum((mid * m).astype(int), m - 1), np.diff(u)


def w2_1d_squared(x, y):
    """Exact squared W2 between 1D empirical measures: x (runs, n, L), y (m, L), both sorted along the
    sample axis (sizes may differ); returns (runs, L). NumPy arrays or torch tensors."""
    n, m = x.shape[1], y.shape[0]
    if n == m:
        return ((x - y) ** 2).mean(1)
    ix, iy, width = quantile_grid(n, m)
    if not isinstance(x, np.ndarray):  # a torch tensor
        import torch

        ix, iy, width = (torch.as_tensor(a, device=x.device) for a in (ix, iy, width.astype(np.float64)))
    return ((x[:, ix] - y[iy]) ** 2 * width[:, None]).sum(1)


def _sort(a, axis: int):
    return np.sort(a, axis=axis) if isinstance(a, np.ndarray) else a.sort(dim=axis).values


@register("sliced_w2", batched=True)
def sliced_w2(ev: Evaluation, projections: int = 128) -> np.ndarray:
    """Sliced W2: root-mean over random unit directions (shared by all runs) of the exact 1D W2^2.

    On a GPU (when torch sees one) the projections are sorted there; on a CPU NumPy sorts faster than
    torch. Runs go in slices that bound memory."""
    import torch

    theta = ev.rng.standard_normal((ev.points.shape[-1], projections))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    x, y = ev.points, ev.reference_points
    if torch.cuda.is_available():
        x, y, theta = (torch.as_tensor(a, device="cuda") for a in (x, y, theta))
    y = _sort(y @ theta, 0)
    step = max(1, 2**24 // ((x.shape[1] + y.shape[0]) * projections))
    out = [w2_1d_squared(_sort(x[i : i + step] @ theta, 1), y).mean(-1) ** 0.5 for i in range(0, len(x), step)]
    return torch.cat(out).cpu().numpy() if isinstance(out[0], torch.Tensor) else np.concatenate(out)


@register("gauss_w2", batched=True)
def gauss_w2(ev: Evaluation) -> np.ndarray:
    """W2 between Gaussian moment fits of each run's samples and of the reference."""
    m1, c1 = mean_cov(ev.points)
    m2, c2 = mean_cov(ev.reference_points[None])
    return gaussian_w2(m1, c1, m2[0], c2[0])


@register("mean_err", batched=True)
def mean_err(ev: Evaluation) -> np.ndarray:
    """Euclidean distance between the sample mean and the reference mean."""
    return np.linalg.norm(ev.points.mean(1) - ev.reference_points.mean(0), axis=-1)


@register("cov_err", batched=True)
def cov_err(ev: Evaluation) -> np.ndarray:
    """Frobenius distance between the sample covariance and the reference covariance."""
    diff = mean_cov(ev.points)[1] - mean_cov(ev.reference_points[None])[1]
    return np.linalg.norm(diff, axis=(-2, -1))


# Precision and recall (Kynkaanniemi et al. 2019) on knn.py's k-nearest-neighbour manifolds.


def in_feature_space(ev: Evaluation) -> Evaluation:
    """Images measured as points: their embeddings by the data source's feature network (SPEC 5); points as they are."""
    if ev.samples is None or ev.samples.ndim != 5:
        return ev
    samples, reference = feature_points(ev)
    return replace(ev, samples=samples, reference=reference)


# A share of samples: higher is better, no MAD ratio.
@register("precision", batched=True, distance=False, prepare=feature_notes)
def precision(ev: Evaluation) -> np.ndarray:
    """Share of generated samples inside the reference's k-NN manifold (k = 3; its radii are shared by all runs);
    images in the feature space of the data source's feature network."""
    ev = in_feature_space(ev)
    ref = ev.reference_points
    radius2 = knn_radius2(ref)
    return by_slices_of_runs(ev, lambda x: coverage(x, ref, radius2))


@register("recall", batched=True, distance=False, prepare=feature_notes)
def recall(ev: Evaluation) -> np.ndarray:
    """Share of reference points inside each run's k-NN manifold of its generated samples (k = 3); images in
    feature space, as for precision."""
    ev = in_feature_space(ev)
    ref = ev.reference_points
    return by_slices_of_runs(ev, lambda x: coverage(ref, x, knn_radius2(x)))
