"""What a metric sees (an ``Evaluation``), what a registered metric is (a ``Metric``), and ``register``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from madloop.registry import METRICS


@dataclass(frozen=True)
class Evaluation:
    """What a metric sees for one generation of a chunk of runs."""

    samples: np.ndarray | None  # (runs, n, *item_shape); None when every metric is a model metric
    reference: np.ndarray  # (m, *item_shape), shared by all runs
    model: Any = None  # the fitted model (None for the real-data floor at generation 0)
    rng: np.random.Generator | None = None  # shared stream for randomised metrics (projections)
    threads: int = 1
    truth: tuple[np.ndarray, np.ndarray] | None = None  # p_r's mean and covariance, where the source knows them
    data: Any = None  # the real-data source (image metrics embed through its feature network)
    cost: Any = None  # the remedies' per-run costs of this generation (madloop/remedies.py), where recorded
    shared: dict = field(default_factory=dict)  # what the metrics of one generation compute once (image embeddings)

    @property
    def points(self) -> np.ndarray:
        return self.samples.reshape(*self.samples.shape[:2], -1)

    @property
    def reference_points(self) -> np.ndarray:
        return self.reference.reshape(len(self.reference), -1)


NEEDS_IMAGES = ("fid, fid_inception, kid, classes and precision/recall on images measure them in a feature network's "
                "space: they need an image data source (--data digits, mnist, fashion-mnist or images)")


@dataclass(frozen=True)
class Metric:
    """A registered metric: its function and how to read it.

    ``batched``: ``fn(ev)`` returns one value per run, or a dict of named arrays of one value per run whose
    names are the metric's own and ``f"{name}_{part}"`` (``classes`` and ``classes_3``); otherwise ``fn(samples (n, d), reference (m, d))``
    returns one float and is called once per run. ``model``: a metric of the fitted model, with no value
    for the real-data floor (generation 0). ``distance``: a distance to p_r, whose MAD ratio
    E[d_t] / E[d_1] means something (not so for a trace or a log-determinant). ``images``: it measures images
    in an image data source's feature network (FID, KID), so a run without such a source is refused before it starts.
    ``prepare``: ``prepare(data) -> dict``, called with the run's data source once before the run starts (and before
    its workers), so that what the metric needs is made once (a feature network, trained and cached) and a bad
    setting fails early; it returns what config.json records about it (``{"features": {"identity": ...}}``).
    ``signed``: its estimate can be zero or negative (KID's unbiased MMD^2), so a ratio of its means says nothing.
    """

    name: str
    fn: Callable
    batched: bool = False
    model: bool = False
    distance: bool = True
    images: bool = False
    prepare: Callable[[Any], dict[str, Any]] | None = None
    signed: bool = False

    def __call__(self, ev: Evaluation) -> np.ndarray | dict[str, np.ndarray]:
        """One value per run of the evaluation (or named arrays of them, see ``batched``)."""
        if self.batched:
            return self.fn(ev)
        return np.array([float(self.fn(x, ev.reference)) for x in ev.samples])


def register(name: str, *, batched: bool = False, model: bool = False, distance: bool = True, images: bool = False,
             prepare: Callable[[Any], dict[str, Any]] | None = None, signed: bool = False, replace: bool = False):
    """Register ``fn`` as metric ``name`` (the options are ``Metric``'s); returns ``fn`` unchanged."""

    def add(fn: Callable) -> Callable:
        METRICS.register(name, replace=replace)(Metric(name, fn, batched, model, distance, images, prepare, signed))
        return fn

    return add
