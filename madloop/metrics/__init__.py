"""Metrics: each maps an ``Evaluation`` (one generation of a chunk of runs) to one value per run.

- ``base``: the ``Evaluation`` a metric sees, the ``Metric`` record the registry holds, ``register``.
- ``sample``: distances between each run's generated samples and the real reference sample (``w2``,
  ``sliced_w2``, ``gauss_w2``, ``mean_err``, ``cov_err``, ``precision``, ``recall``).
- ``knn``: k-nearest-neighbour manifolds, the helpers behind precision and recall (points and image features).
- ``image``: images in the feature space of the data set's own classifier (``fid``, ``kid``, ``classes``;
  ``precision`` and ``recall`` embed images there too), and ``madloop.fid`` and friends for scripts.
- ``model``: quantities of the fitted model itself (``model_trace``, ``model_logdet``) and its closed-form
  distances to p_r (``true_*``); they draw no sample.

Users add their own with ``@madloop.metric("name")`` on a plain function
``f(samples (n, d), reference (m, d)) -> float``; a ``batched=True`` function takes the whole Evaluation.
"""

from madloop.metrics.base import Evaluation, Metric, register
from madloop.metrics import image, model, sample  # noqa: E402,F401  (registers the built-in metrics)

__all__ = ["Evaluation", "Metric", "register"]
