"""Moved to ``madloop.metrics.model``. This module keeps the old import path for tests/test_exact.py and
benchmarks/bench_gaussian.py only: delete it once they import ``madloop.metrics.model``."""

from madloop.metrics.model import true_cov_err, true_kl, true_kl_rev, true_mean_err, true_w2  # noqa: F401
