"""Samples of a chunk of runs: an array with the run on the first axis, labels carried beside it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Samples:
    """``x`` has shape (runs, n, *item_shape): points (item_shape = (d,)) or images (c, h, w).

    ``y`` holds one integer label per sample, shape (runs, n), or None for unlabelled data.
    """

    x: np.ndarray
    y: np.ndarray | None = None

    def __post_init__(self):
        if self.x.ndim < 3:
            raise ValueError(f"samples need shape (runs, n, *item_shape), got {self.x.shape}")
        if self.y is not None and self.y.shape != self.x.shape[:2]:
            raise ValueError(f"labels of shape {self.y.shape} do not match samples of shape {self.x.shape}")

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
        return Samples(self.x[rows, index], None if self.y is None else self.y[rows, index])

    def runs(self, rows) -> "Samples":
        """The samples of some runs only."""
        return Samples(self.x[rows], None if self.y is None else self.y[rows])

    @staticmethod
    def concat(parts: list["Samples"]) -> "Samples":
        """Join sample sets along the sample axis (run by run)."""
        labelled = [p.y is not None for p in parts]
        if any(labelled) and not all(labelled):
            raise ValueError("cannot join labelled and unlabelled samples")
        x = np.concatenate([p.x for p in parts], axis=1)
        y = np.concatenate([p.y for p in parts], axis=1) if all(labelled) else None
        return Samples(x, y)
