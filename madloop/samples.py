"""Samples of a chunk of runs: an array with the run on the first axis, labels and weights carried beside it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Samples:
    """``x`` has shape (runs, n, *item_shape): points (item_shape = (d,)) or images (c, h, w).

    ``y`` holds one integer label per sample, shape (runs, n), or None for unlabelled data.
    ``w`` holds each sample's weight in the training objective, shape (runs, n), or None for equal weights
    (the loop's real-data weighting, ``weighted``; a family that reads weights normalises them per run).
    """

    x: np.ndarray
    y: np.ndarray | None = None
    w: np.ndarray | None = None

    def __post_init__(self):
        if self.x.ndim < 3:
            raise ValueError(f"samples need shape (runs, n, *item_shape), got {self.x.shape}")
        if self.y is not None and self.y.shape != self.x.shape[:2]:
            raise ValueError(f"labels of shape {self.y.shape} do not match samples of shape {self.x.shape}")
        if self.w is not None and (self.w.shape != self.x.shape[:2] or not (self.w >= 0).all()):
            raise ValueError(f"weights must be non-negative, one per sample {self.x.shape[:2]}, got shape {self.w.shape}")

    @property
    def n_runs(self) -> int:
        return self.x.shape[0]

    @property
    def n(self) -> int:
        return self.x.shape[1]

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.x.shape[2:]

    def take(self, index: np.ndarray) -> "Samples":
        """Per-run selection: ``index`` has shape (runs, k) and picks k samples of each run."""
        rows = np.arange(self.n_runs)[:, None]
        return Samples(*(None if a is None else a[rows, index] for a in (self.x, self.y, self.w)))

    def runs(self, rows) -> "Samples":
        """The samples of some runs only."""
        return Samples(*(None if a is None else a[rows] for a in (self.x, self.y, self.w)))

    def weighted(self, share: float) -> "Samples":
        """These samples carrying the share ``share`` of a training objective, equally: each weighs share / n."""
        return Samples(self.x, self.y, np.full(self.x.shape[:2], share / self.n))

    @staticmethod
    def concat(parts: list["Samples"]) -> "Samples":
        """Join sample sets along the sample axis (run by run)."""
        joined = []
        for name, what in (("y", "labelled and unlabelled"), ("w", "weighted and unweighted")):
            given = [getattr(p, name) is not None for p in parts]
            if any(given) and not all(given):
                raise ValueError(f"cannot join {what} samples")
            joined.append(np.concatenate([getattr(p, name) for p in parts], axis=1) if all(given) else None)
        return Samples(np.concatenate([p.x for p in parts], axis=1), *joined)
