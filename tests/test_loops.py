import numpy as np
import pytest

import madloop
from madloop.runner import build


def run_gens(runs=3, **settings):
    cfg = madloop.resolve(dict(runs=runs, n_real=20, n_synth=15, gens=5, path="samples", **settings))
    return cfg, list(madloop.generations(cfg, build(cfg), range(0, runs)))


@pytest.mark.parametrize("loop, sizes", [
    ("fully_synthetic", [20, 15, 15, 15, 15]),
    ("augmentation", [20, 35, 35, 35, 35]),
    ("fresh", [20, 35, 35, 35, 35]),
])
def test_training_set_sizes_per_loop(loop, sizes):
    _, gens = run_gens(loop=loop)
    assert [g.n_train for g in gens] == sizes
    assert all(g.synth.x.shape == (3, 15, 2) for g in gens)


def test_accumulate_keeps_every_synthetic_set_and_budget_caps_it():
    _, gens = run_gens(loop="augmentation", accumulate=True)
    assert [g.n_train for g in gens] == [20, 35, 50, 65, 80]
    _, gens = run_gens(loop="fully_synthetic", accumulate=True, budget=40)
    assert [g.n_train for g in gens] == [20, 15, 30, 40, 40]


class Recorder:
    """A model family that remembers its training sets (to check what each loop feeds it)."""

    seen: list = []

    def fit(self, data, rng):
        Recorder.seen.append(data.x.copy())
        return madloop.MODELS["gaussian"]().fit(data, rng)


def test_loops_feed_the_right_data():
    madloop.MODELS.register("recorder", replace=True)(Recorder)
    for loop in ("fully_synthetic", "augmentation", "fresh"):
        Recorder.seen = []
        _, gens = run_gens(loop=loop, model="recorder", runs=2)
        real = Recorder.seen[0]
        for t in range(1, 5):
            train, previous_synth = Recorder.seen[t], gens[t - 1].synth.x
            np.testing.assert_array_equal(train[:, -15:], previous_synth)  # S^(t-1) is always in D^t
            if loop == "augmentation":
                np.testing.assert_array_equal(train[:, :20], real)  # the same real set every time
            if loop == "fresh":
                assert not np.isin(train[:, :20], real).any()  # a new real draw
                assert not np.array_equal(train[:, :20], Recorder.seen[t - 1][:, :20])


def test_lam_shrinks_the_synthetic_spread_but_not_the_real_data():
    _, unbiased = run_gens(runs=400, lam=1.0, seed=1)
    _, biased = run_gens(runs=400, lam=0.5, seed=1)
    # Same seed: generation 1 trains on the same real data, so its model is identical.
    np.testing.assert_array_equal(unbiased[0].model.cov, biased[0].model.cov)
    ratio = biased[0].synth.x.var(axis=1).mean() / unbiased[0].synth.x.var(axis=1).mean()
    assert ratio == pytest.approx(0.5, rel=0.08)
