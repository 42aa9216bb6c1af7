"""Engine pieces the image tier added: metrics with named parts, a data source's own reference pool, grids."""

from dataclasses import dataclass

import numpy as np
import pytest

import madloop
from madloop import grids
from madloop.results import is_distance
from madloop.samples import Samples


@madloop.metric("halves", batched=True, distance=False, replace=True)
def halves(ev):
    """Share of each run's samples left and right of 0 on the first axis, and the larger share."""
    left = (ev.points[..., 0] < 0).mean(1)
    return {"halves": np.maximum(left, 1 - left), "halves_left": left, "halves_right": 1 - left}


@madloop.metric("misnamed", batched=True, replace=True)
def misnamed(ev):
    return {"other": np.zeros(len(ev.points))}


@madloop.DATA.register("split-points", replace=True)
@dataclass(frozen=True)
class SplitPoints:
    """Training draws from N(0, 1) in 2D; the reference pool is far away at (100, 100): measurable."""

    def sample(self, n, rng):
        return Samples(rng.standard_normal(n, 2))

    def reference(self, n, rng):
        return Samples(100 + rng.standard_normal(n, 2))


def test_a_metric_with_named_parts_stores_each_part_with_its_distance_flag(tmp_path):
    result = madloop.run(out=tmp_path / "r", model="gaussian", metrics=("halves", "mean_err"), runs=20, gens=2,
                         n_real=50, n_synth=50, n_eval=50, n_ref=50, path="samples")
    s = result.summary()
    assert {"halves", "halves_left", "halves_right", "mean_err"} <= set(s.metric)
    both = s[s.metric == "halves_left"].set_index("gen")["mean"] + s[s.metric == "halves_right"].set_index("gen")["mean"]
    assert np.allclose(both, 1.0)
    assert not is_distance("halves_left") and not is_distance("halves") and is_distance("mean_err")
    assert is_distance("sliced_w2")  # a registered name with an underscore is itself


def test_a_part_must_carry_its_metric_name(tmp_path):
    with pytest.raises(madloop.MadloopError, match="names must be 'misnamed' or start with 'misnamed_'"):
        madloop.run(out=tmp_path / "r", metrics=("misnamed",), runs=2, gens=1, path="samples")


def test_the_reference_comes_from_the_source_reference_pool(tmp_path):
    result = madloop.run(out=tmp_path / "r", data="split-points", model="gaussian", metrics=("mean_err",), runs=4,
                         gens=1, n_real=40, n_synth=40, n_eval=40, n_ref=40)
    floor = result.summary().set_index(["metric", "gen"])["mean"]["mean_err", 0]
    assert 135 < floor < 148  # |(100, 100)| = 141.4: the floor compares the training pool with the reference pool


def test_tile_sorts_by_label_and_pads():
    x = np.stack([np.full((1, 2, 2), v) for v in (0.0, 1.0, 0.5)])
    picture = grids.tile(x, np.array([2, 0, 1]), columns=3)
    assert picture.shape == (2 + 2 * grids.PAD, 3 * 2 + 4 * grids.PAD)
    row = picture[grids.PAD]
    tiles = [row[grids.PAD + i * (2 + grids.PAD)] for i in range(3)]
    assert tiles == [255, 128, 0]  # labels 0, 1, 2: the values 1.0, 0.5, 0.0
