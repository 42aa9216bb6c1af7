"""Users add metrics and models from their own code, without editing madloop."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

import madloop
from madloop.samples import Samples


@madloop.metric("spread", replace=True)
def spread(samples, reference):
    """Mean distance of a run's samples from the reference centre."""
    return float(np.linalg.norm(samples - reference.mean(0), axis=1).mean())


@dataclass(frozen=True)
class ShiftedModel:
    mean: np.ndarray

    def sample(self, n, rng, lam=1.0):
        return Samples(self.mean[:, None, :] + np.sqrt(lam) * rng.standard_normal(n, self.mean.shape[1]) + self.shift)

    shift: float = 0.0


@madloop.models.register("drifting", replace=True)
@dataclass(frozen=True)
class Drifting:
    """A toy family whose every fit adds a constant drift."""

    drift: float = 0.5

    def fit(self, data, rng):
        return ShiftedModel(data.x.mean(axis=1), self.drift)


def test_user_metric_and_model_run_in_workers_too(tmp_path):
    settings = dict(model="drifting", drift=1.0, metrics=("spread", "mean_err"), runs=300, gens=4,
                    n_real=50, n_synth=50, n_eval=50, n_ref=50)
    one = madloop.run(out=tmp_path / "one", **settings)
    two = madloop.run(out=tmp_path / "two", jobs=2, **settings)
    cols = ["run", "gen", "metric", "value"]
    pd.testing.assert_frame_equal(one.table[cols], two.table[cols])
    s = one.summary().set_index(["metric", "gen"])["mean"]
    # The fitted mean drifts by one unit per coordinate and generation, so its error grows steadily.
    errors = [s["mean_err", t] for t in range(1, 5)]
    assert np.allclose(np.diff(errors), np.sqrt(2), atol=0.15)
    assert one.config.model_options == {"drift": 1.0}
