"""images-convergence (issue 28, item 1): one training gives the model of every budget of the ladder exactly; the
study's table, its floor rows, its plateau reading and its kept stages."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

from madloop.models.unet import UNet
from madloop.rng import RunRNG
from madloop.samples import Samples
from madloop.studies import STUDIES, load_all
from madloop.studies import images_convergence as ic

load_all()


def rng(role: str, runs: int = 2) -> RunRNG:
    return RunRNG(7, range(runs), 1, role, total=runs)


@pytest.mark.parametrize("options", [dict(), dict(ema=0.0, dropout=0.2, warmup=0)])
def test_the_ladder_of_one_training_is_each_budget_fitted_alone_bit_for_bit(options):
    """The learning rate, the minibatch order and the EMA's half-life at a step depend only on the images seen so
    far: the model at n images of one training equals ``replace(spec, images=n).fit`` exactly (tiny 8x8 digits;
    a budget inside the warm-up, one not a multiple of the batch, one past the EMA's ramp-up)."""
    digits = load_digits()
    index = rng("data").permutations(len(digits.images), 48)
    data = Samples((digits.images / 16).astype(np.float32)[:, None][index], digits.target[index])
    spec = UNet(**{**dict(channels=8, batch=16, warmup=64, ema=16, steps=4, runs_per_pass=2), **options})
    budgets = (32, 88, 400)
    ladder = spec.fit_ladder(data, rng("fit"), budgets)
    assert [m.spec.images for m in ladder] == list(budgets)
    for n, model in zip(budgets, ladder):
        alone = replace(spec, images=n).fit(data, rng("fit"))
        assert model.spec == alone.spec and model.weights.keys() == alone.weights.keys()
        for k, v in alone.weights.items():
            assert torch.equal(model.weights[k], v), (n, k)
    # each budget is its own model (a snapshot, not the tensors training went on changing)
    assert not torch.equal(ladder[0].weights["out.w"], ladder[-1].weights["out.w"])


def test_the_plateau_is_the_best_budget_and_the_reading_says_whether_the_curve_flattened():
    def table(fids):
        rows = [dict(kind="base", images=4096 * 2**i, metric="fid", mean=f, ci_low=f, ci_high=f)
                for i, f in enumerate(fids)]
        return pd.DataFrame([*rows, dict(kind="floor", images=0, metric="fid", mean=0.1, ci_low=0.09, ci_high=0.11)])

    flattening = ic.plateau(table([2.0, 1.0, 0.8, 0.75, 0.74]))
    assert (flattening["plateau_images"], flattening["within_images"]) == (65536, 16384)  # 0.8 <= 1.1 x 0.74
    assert flattening["reading"].startswith("flattening") and flattening["floor_fid"] == 0.1
    assert ic.plateau(table([2.0, 1.0, 0.6]))["reading"].startswith("still falling")
    rising = ic.plateau(table([2.0, 0.5, 0.52, 0.7]))
    assert (rising["plateau_images"], rising["within_images"]) == (8192, 8192) and rising["reading"].startswith("rises")
    assert ic.plateau(table([2.0, 0.5, 0.52, 0.53]))["reading"].startswith("flat:")


def test_the_ci_scale_keeps_its_stages_and_tables_every_budget_beside_the_floor(tmp_path, monkeypatch):
    """Every budget and metric has a row with its CI over runs; the floor is generation 0; a second call on the
    work folder trains nothing and gives the same rows."""
    from madloop.studies import common

    torch.set_num_threads(1)
    p = STUDIES[ic.NAME].scales["ci"]
    work = tmp_path / "work"
    with common.inside(work):
        raw, pictures = ic.run_groups(p, 1)
    assert len(list(work.glob("stage-*.npz"))) == 1 + p["draws"]  # the ladder, then each draw

    def trains(*args, **kwargs):
        raise AssertionError("a kept ladder was trained again")

    monkeypatch.setattr(UNet, "fit_ladder", trains)
    with common.inside(work):
        again, _ = ic.run_groups(p, 1)
    pd.testing.assert_frame_equal(again, raw)

    table, summary = ic.part_table(raw, p)
    assert set(table.metric) == set(ic.METRICS) and {"mean", "ci_low", "ci_high", "diff", "n", "draws"} <= set(table)
    base = table[table.kind == "base"]
    assert sorted(set(base.images)) == list(p["budgets"]) and (base.gen == 1).all()
    floor = table[table.kind == "floor"]
    assert len(floor) == len(ic.METRICS) and (floor.gen == 0).all() and (floor.images == 0).all()
    assert (table.n == p["runs"]).all() and (table.draws == p["draws"]).all()
    assert (table.ci_low <= table["mean"]).all() and (table["mean"] <= table.ci_high).all()
    best = base[(base.metric == "fid") & (base.images == summary["plateau_images"])]
    assert best["mean"].item() == base[base.metric == "fid"]["mean"].min() and best["diff"].item() == 0
    assert summary["within_images"] <= summary["plateau_images"] and 0 < summary["feature_accuracy"] <= 1
    assert {("base", b) for b in p["budgets"]} | {("floor", 0)} == set(pictures)
