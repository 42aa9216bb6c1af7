"""Image loops end to end on 8x8 digits with a tiny U-Net: the engine's promises hold for images too."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import madloop
from madloop import grids, store
from madloop.cli import main
from madloop.models.unet import UNet

VALUES = ["run", "gen", "metric", "value"]
TINY = dict(data="digits", runs=4, gens=2, n_real=64, n_synth=64, n_eval=64, n_ref=64, images=256, batch=32, channels=8,
            steps=4, warmup=64, ema=64, runs_per_pass=2)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return madloop.run(out=tmp_path_factory.mktemp("img") / "whole", **TINY)


def test_an_image_loop_measures_every_image_metric_with_its_floor_and_records_the_feature_network(whole):
    s = whole.summary()
    names = {"fid", "kid", "precision", "recall", "classes", *(f"classes_{k}" for k in range(10))}
    assert names <= set(s.metric)
    assert set(s[s.metric == "fid"].gen) == {0, 1, 2}  # generation 0: real images against the reference pool
    floor, first = (s[(s.metric == "fid") & (s.gen == g)]["mean"].item() for g in (0, 1))
    assert 0 <= floor < first  # a barely trained U-Net is far from the real-data floor
    shares = s[s.metric.str.startswith("classes_") & (s.gen == 1)]["mean"]
    assert shares.sum() == pytest.approx(1.0)
    features = store.read_meta(whole.path)["features"]
    assert features["identity"].startswith("lenet:digits-8x8") and features["accuracy"] > 0.9


def test_grids_keep_the_same_noise_and_labels_and_madloop_grid_draws_them(whole, tmp_path, capsys):
    assert grids.stored(whole.path, 0) == [0, 1, 2] and grids.stored(whole.path, 3) == [0, 1, 2]
    assert grids.stored(whole.path, 4) == []  # only runs 0..GRID_RUNS-1 keep grids
    picture = grids.read(whole.path, 1, 0)
    assert picture.shape == (grids.PER_CLASS * 9 + grids.PAD, 10 * 9 + grids.PAD)  # 4 x 10 tiles of 8x8, 1 px apart
    with pytest.raises(SystemExit) as done:
        main_args(["grid", str(whole.path), "--gens", "0,2", "--runs", "0,1", "--out", str(tmp_path)])
    assert done.value.code == 0 and (tmp_path / "grid.png").stat().st_size > 0
    with pytest.raises(SystemExit) as bad:
        main_args(["grid", str(whole.path), "--gens", "5"])
    assert bad.value.code == 2 and "no grid of generation 5" in capsys.readouterr().err


def main_args(args):
    import sys

    old = sys.argv
    sys.argv = ["madloop", *args]
    try:
        main()
    finally:
        sys.argv = old


def test_the_table_does_not_depend_on_the_number_of_workers(whole, tmp_path):
    two = madloop.run(out=tmp_path / "two", jobs=2, **TINY)
    pd.testing.assert_frame_equal(whole.table[VALUES], two.table[VALUES])


@dataclass(frozen=True)
class CrashingUNet(UNet):
    """The unet family, but the process 'dies' while training generation ``crash_at``."""

    crash_at = None

    def fit(self, data, rng):
        if rng.gen == CrashingUNet.crash_at:
            raise RuntimeError("simulated crash")
        return super().fit(data, rng)


def test_a_crashed_image_loop_resumes_to_the_identical_table_and_grids(whole, tmp_path):
    madloop.MODELS.register("crashing-unet", replace=True)(CrashingUNet)
    cfg = madloop.resolve({**TINY, "model": "crashing-unet", "metrics": whole.config.metrics})
    CrashingUNet.crash_at = 2
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            madloop.execute(cfg, out=tmp_path / "crashed", checkpoint_s=0)
    finally:
        CrashingUNet.crash_at = None
    resumed = madloop.runner.resume(tmp_path / "crashed")
    pd.testing.assert_frame_equal(resumed.table[VALUES], whole.table[VALUES])
    for gen in (0, 1, 2):
        np.testing.assert_array_equal(grids.read(tmp_path / "crashed", gen, 0), grids.read(whole.path, gen, 0))


def test_sims_on_images_with_omega_zero_gives_exactly_the_standard_table(tmp_path):
    tiny = {**TINY, "runs": 2, "gens": 1, "metrics": ("fid",)}
    standard = madloop.run(out=tmp_path / "standard", **tiny)
    sims = madloop.run(out=tmp_path / "sims", algo="sims", omega=0.0, aux_images=64, **tiny)
    assert sims.config.model == "unet"  # image data keeps its model family under sims
    assert standard.table[VALUES].equals(sims.table[VALUES])


@pytest.mark.parametrize("algo", [dict(algo="sims", aux_data="real", n_aux=32), dict(algo="autoguidance"),
                                  dict(algo="sims", n_aux=32, aux_decoder_only=True)],
                         ids=["real-data-control", "autoguidance", "decoder-only"])
def test_the_controls_run_in_an_image_loop(tmp_path, algo):
    tiny = {**TINY, "runs": 2, "gens": 2, "metrics": ("fid",), "omega": 0.5, "aux_images": 64}
    result = madloop.run(out=tmp_path / "r", **tiny, **algo)
    fid = result.summary().query("metric == 'fid'")
    assert list(fid.gen) == [0, 1, 2] and np.isfinite(fid["mean"]).all()
