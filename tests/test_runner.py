import numpy as np
import pandas as pd
import pytest

import madloop
from madloop import store
from madloop.rng import RUNS_PER_BLOCK

VALUES = ["run", "gen", "metric", "value"]


def test_same_seed_gives_identical_tables_and_another_seed_does_not(tmp_path, tiny):
    a = madloop.run(out=tmp_path / "a", **tiny).table[VALUES]
    b = madloop.run(out=tmp_path / "b", **tiny).table[VALUES]
    c = madloop.run(out=tmp_path / "c", seed=1, **tiny).table[VALUES]
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.value, c.value)


def test_worker_count_does_not_change_the_table(tmp_path):
    settings = dict(runs=2 * RUNS_PER_BLOCK + 10, gens=3, n_real=20, n_synth=20, n_eval=30, n_ref=30, path="samples",
                    metrics=("w2", "sliced_w2", "gauss_w2"))
    one = madloop.run(out=tmp_path / "one", jobs=1, **settings).table[VALUES]
    two = madloop.run(out=tmp_path / "two", jobs=2, **settings).table[VALUES]
    pd.testing.assert_frame_equal(one, two)


@pytest.mark.parametrize("model, options", [("gaussian", {}), ("ddpm", dict(epochs=2, width=16, depth=2))])
def test_a_few_runs_are_shared_among_workers_without_changing_the_table(tmp_path, model, options):
    settings = dict(runs=7, gens=2, n_real=30, n_synth=30, n_eval=30, n_ref=30, path="samples", model=model,
                    metrics=("w2",), **options)
    one = madloop.run(out=tmp_path / "one", jobs=1, **settings)
    three = madloop.run(out=tmp_path / "three", jobs=3, **settings)
    assert madloop.load(tmp_path / "three").config.runs == 7
    assert [tuple(c) for c in store.read_meta(tmp_path / "three")["chunks"]] == [(0, 2), (2, 5), (5, 7)]
    pd.testing.assert_frame_equal(one.table[VALUES], three.table[VALUES])


def test_table_layout_and_summary(tmp_path, tiny):
    result = madloop.run(out=tmp_path / "r", every=2, **tiny)
    t = result.table
    assert list(t.columns) == ["run", "gen", "metric", "value", "train_s", "eval_s"]
    assert sorted(t.gen.unique()) == [0, 1, 3, 4]  # floor, every 2nd generation, and the last
    assert len(t) == tiny["runs"] * 4 * 4
    s = result.summary()
    row = s[(s.metric == "w2") & (s.gen == 4)].iloc[0]
    values = t[(t.metric == "w2") & (t.gen == 4)].value
    assert row["mean"] == pytest.approx(values.mean())
    assert row.ci_low < row["mean"] < row.ci_high
    first = t[(t.metric == "w2") & (t.gen == 1)].value.mean()
    assert row.mad_ratio == pytest.approx(values.mean() / first)
    assert (tmp_path / "r" / "table.parquet").is_file() and (tmp_path / "r" / "summary.csv").is_file()
    reloaded = madloop.load(tmp_path / "r")
    for frame in ("table", "moments", "convergence"):  # the returned result is what the directory holds
        pd.testing.assert_frame_equal(getattr(reloaded, frame), getattr(result, frame))
    assert reloaded.config == result.config


def test_collapse_shows_in_the_mad_ratio(tmp_path):
    result = madloop.run(out=tmp_path / "r", loop="fully_synthetic", n_real=20, n_synth=20, gens=25, runs=300,
                         metrics=("gauss_w2",), n_eval=200, n_ref=200, path="samples")
    headline = result.headline().set_index("metric").loc["gauss_w2"]
    assert headline.mad_ratio_low > 1.5
    assert headline.convergence_ratio > 1.5


def test_convergence_ratio_needs_generation_20(tmp_path, tiny):
    result = madloop.run(out=tmp_path / "r", **tiny)
    assert np.isnan(result.convergence_ratio("w2")[0])


def test_a_killed_run_keeps_its_finished_generations(tmp_path, tiny):
    from madloop import store

    result = madloop.run(out=tmp_path / "r", **tiny)
    # Rebuild the state a crash leaves: part files for the finished generations only, no final tables.
    for kind in store.KINDS:
        (tmp_path / "r" / kind.file).unlink()
    rows = result.table[result.table.gen <= 2]
    for gen, df in rows.groupby("gen"):
        store.append(tmp_path / "r", store.ROWS, 0, int(gen), df)
    partial = madloop.load(tmp_path / "r").table
    pd.testing.assert_frame_equal(partial, rows.reset_index(drop=True))


def test_summary_covers_every_run_when_only_some_keep_rows(tmp_path, tiny):
    settings = {**tiny, "runs": RUNS_PER_BLOCK + 50}
    full = madloop.run(out=tmp_path / "full", **settings)
    part = madloop.run(out=tmp_path / "part", store_runs=100, **settings)
    assert set(part.table.run) == set(range(100))
    cols = ["metric", "gen", "n", "mean", "sem", "ci_low", "ci_high", "mad_ratio"]
    pd.testing.assert_frame_equal(full.summary()[cols], part.summary()[cols])
    # The ratio's interval: a bootstrap over the stored rows, the delta method on the sums without them;
    # with a thousand runs the two agree closely.
    ends = ["mad_ratio_low", "mad_ratio_high"]
    boot, delta = full.summary()[ends].to_numpy(), part.summary()[ends].to_numpy()
    assert np.isnan(boot).tolist() == np.isnan(delta).tolist() and np.isfinite(delta).sum() > 10
    assert not np.array_equal(boot, delta, equal_nan=True)  # two methods
    width = boot[:, 1] - boot[:, 0]
    spread = width > 0  # generation 1's ratio is 1 in every run: both intervals are [1, 1]
    assert np.abs(boot - delta)[spread].max() < 0.1 * width[spread].min() and (boot == delta)[width == 0].all()
    # and the sums over chunks give what the per-run table gives directly
    t = full.table[(full.table.metric == "w2")].pivot(index="run", columns="gen", values="value")
    row = full.summary().set_index(["metric", "gen"]).loc[("w2", 3)]
    assert row.n == settings["runs"]
    assert row["mean"] == pytest.approx(t[3].mean())
    assert row["sem"] == pytest.approx(t[3].std(ddof=1) / np.sqrt(len(t)))
    assert row.mad_ratio == pytest.approx(t[3].mean() / t[1].mean())
    assert row["median"] == pytest.approx(t[3].median())


def test_chunks_are_whole_blocks_except_for_a_few_runs_on_the_cpu():
    from madloop.runner import SPLIT_RUNS, chunks

    assert chunks(8, 2) == [range(0, 4), range(4, 8)]
    assert chunks(8, 2, split=False) == [range(0, 8)]  # one GPU worker keeps its runs together
    assert chunks(3, 8) == [range(0, 1), range(1, 2), range(2, 3)]
    assert chunks(SPLIT_RUNS + 1, 2) == [range(0, SPLIT_RUNS + 1)]
    assert chunks(2 * RUNS_PER_BLOCK + 5, 2) == [range(0, 2 * RUNS_PER_BLOCK), range(2 * RUNS_PER_BLOCK, 2 * RUNS_PER_BLOCK + 5)]
