import pandas as pd
import pytest

import madloop
from madloop.sweep import grid


def test_grid_order_and_bad_axes():
    assert grid({"a": [1, 2], "b": ["x", "y"]}) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(madloop.MadloopError, match="sweep axis 'lam' needs a non-empty list"):
        grid({"lam": []})


def test_sweep_table_has_swept_columns_and_matches_single_runs(tmp_path, tiny):
    res = madloop.sweep({"lam": [1.0, 0.5], "loop": ["fully_synthetic", "augmentation"]}, out=tmp_path / "s", **tiny)
    t = res.table
    assert set(zip(t.lam, t.loop)) == {(1.0, "fully_synthetic"), (1.0, "augmentation"), (0.5, "fully_synthetic"), (0.5, "augmentation")}
    single = madloop.run(out=tmp_path / "one", lam=0.5, loop="augmentation", **tiny).table
    cols = ["run", "gen", "metric", "value"]
    point = t[(t.lam == 0.5) & (t.loop == "augmentation")][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(point, single[cols])
    assert {"lam", "loop", "mean", "ci_low", "mad_ratio"} <= set(res.summary().columns)


def test_a_bad_point_fails_before_anything_runs(tmp_path, tiny):
    with pytest.raises(madloop.MadloopError, match="lam must be in"):
        madloop.sweep({"lam": [1.0, 2.0]}, out=tmp_path / "s", **tiny)
    assert not (tmp_path / "s").exists()
