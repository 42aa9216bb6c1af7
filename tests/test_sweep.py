import shutil

import numpy as np
import pandas as pd
import pytest

import madloop
from madloop.sweeps import grid, resume_sweep


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


def test_points_in_parallel_are_ordinary_run_dirs_with_the_same_numbers(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(madloop.METRICS, "_items", dict(madloop.METRICS._items))  # registered for this test only

    @madloop.metric("test-spread")  # registered here, not on a module's import: the point workers learn it
    def spread(samples, reference):
        return float(np.abs(samples - reference.mean(0)).mean())

    axes = {"lam": [1.0, 0.5], "loop": ["fully_synthetic", "augmentation"]}
    settings = dict(tiny, metrics=("w2", "test-spread"))
    one = madloop.sweep(axes, out=tmp_path / "one", **settings)
    both = madloop.sweep(axes, out=tmp_path / "both", point_jobs=2, jobs=2, **settings)
    cols = ["run", "gen", "metric", "value", "lam", "loop"]
    pd.testing.assert_frame_equal(both.table[cols], one.table[cols], check_exact=True)
    assert set(one.table.metric) == {"w2", "test-spread"}
    # Every point is a run directory of its own; one lost runs again on resume, with the same numbers.
    point = madloop.load(tmp_path / "both" / "point-002")
    pd.testing.assert_frame_equal(point.table[cols[:4]], one.results[2].table[cols[:4]], check_exact=True)
    shutil.rmtree(tmp_path / "both" / "point-001")
    again = resume_sweep(tmp_path / "both", point_jobs=2)
    pd.testing.assert_frame_equal(again.table[cols], one.table[cols], check_exact=True)


def test_a_list_of_points_runs_those_points(tmp_path, tiny):
    res = madloop.sweep([{"lam": 1.0}, {"lam": 0.5, "n_synth": 20}], out=tmp_path / "s", **tiny)
    assert [(r.config.lam, r.config.n_synth) for r in res.results] == [(1.0, 30), (0.5, 20)]
    assert list(res.summary().groupby("lam", sort=False).n_synth.first().fillna(0)) == [0, 20]  # the points' settings


def test_a_bad_point_fails_before_anything_runs(tmp_path, tiny):
    with pytest.raises(madloop.MadloopError, match="lam must be in"):
        madloop.sweep({"lam": [1.0, 2.0]}, out=tmp_path / "s", **tiny)
    with pytest.raises(madloop.MadloopError, match="lam must be in"):
        madloop.sweep([{"lam": 1.0}, {"lam": 2.0}], out=tmp_path / "s", **tiny)
    with pytest.raises(madloop.MadloopError, match="non-empty list of points"):
        madloop.sweep([], out=tmp_path / "s", **tiny)
    with pytest.raises(madloop.MadloopError, match="point_jobs must be a positive integer, got 0"):
        madloop.sweep({"lam": [1.0]}, out=tmp_path / "s", point_jobs=0, **tiny)
    assert not (tmp_path / "s").exists()


def test_madloop_sweep_is_the_function_and_its_module_has_another_name():
    import madloop.sweeps  # importing the module leaves the package's name to the function

    assert madloop.sweep is madloop.sweeps.sweep and callable(madloop.sweep)
