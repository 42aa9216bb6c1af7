"""The exact Gaussian path, in one place: where it applies (``applies``) and what it swaps in (``parts``).

The ``gaussian`` model's maximum-likelihood fit reads a training set only through its size, mean and
scatter matrix, and for Gaussian data their laws are known (normal and Wishart: models/exact.py). So the
loop can draw those statistics instead of points, at a cost per run that does not depend on n, and every
law of the sample path still holds. On this path:

- the data source draws the statistics of each real set (``StatsData``), the model fits from them
  (``ExactGaussian``), and the loop pools them with ``Stats.concat`` (its ``join`` pools any set type
  through that type's ``concat``);
- the metrics still see points: ``points`` is the Gaussian source drawing real points, and
  ``sample_points`` draws a fitted model's points from N(mean, lam cov).

Its default metrics are closed-form distances between each fitted Gaussian and the truth, which need no
points at all.
"""

from __future__ import annotations

import dataclasses

from madloop import remedies
from madloop.models.exact import ExactGaussian, StatsData, StatsModel

METRICS = ("true_w2", "true_kl", "model_trace", "model_logdet")


def applies(cfg) -> bool:
    """The ``gaussian`` model on ``gaussian`` data with standard training, no budget, and no curation or
    correction that changes S^t (subsampling a pooled set to a budget, curating or moving its points is not
    a function of its statistics). Real-data weighting pools weighted statistics (models/exact.py)."""
    return ((cfg.model, cfg.data, cfg.algo, cfg.budget) == ("gaussian", "gaussian", "standard", None)
            and not remedies.active(cfg))


def parts(cfg, base):
    """The runner's parts ``base`` (a runner.Parts) with the exact path's swapped in."""
    return dataclasses.replace(base, data=StatsData(base.points), model=ExactGaussian(**cfg.model_options),
                               sample_points=StatsModel.sample_points)
