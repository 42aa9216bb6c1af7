"""k-nearest-neighbour manifolds, behind precision and recall (Kynkaanniemi et al. 2019): each set's manifold is
the union of the balls around its points that reach their k-th nearest neighbour in the same set. Precision =
share of generated samples inside the real manifold; recall = share of real points inside the generated one.

The one home of these helpers: ``sample``'s precision and recall metrics and ``image``'s for scripts use them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from madloop.metrics.base import Evaluation

KNN_K = 3
PAIRS_PER_SLICE = 2**22  # distance-matrix entries held at once (32 MB)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the points of a (..., n, d) and b (..., m, d): (..., n, m)."""
    d2 = (a**2).sum(-1)[..., :, None] + (b**2).sum(-1)[..., None, :] - 2 * a @ np.swapaxes(b, -1, -2)
    return np.clip(d2, 0.0, None)


def knn_radius2(x: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """Squared distance from each point of x (..., n, d) to its k-th nearest neighbour in x, itself excluded."""
    if x.shape[-2] <= k:
        raise ValueError(f"k-nearest-neighbour manifolds with k={k} need more than {k} points, got {x.shape[-2]}")
    return np.partition(squared_distances(x, x), k, axis=-1)[..., k]


def coverage(queries: np.ndarray, points: np.ndarray, radius2: np.ndarray) -> np.ndarray:
    """Share of queries (..., q, d) inside the union of the balls around points (..., p, d) of squared radii (..., p)."""
    return (squared_distances(queries, points) <= radius2[..., None, :]).any(-1).mean(-1)


def by_slices_of_runs(ev: Evaluation, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """fn over slices of the runs' points, sized so that each slice's distance matrices stay small."""
    x = ev.points
    step = max(1, PAIRS_PER_SLICE // (x.shape[1] * max(x.shape[1], len(ev.reference))))
    return np.concatenate([fn(x[i : i + step]) for i in range(0, len(x), step)])
