"""Every registered study runs end to end at its ci scale; the science the studies rely on, on known answers."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import madloop
from madloop.models.gaussian import Gaussian
from madloop.rng import RunRNG
from madloop.samples import Samples
from madloop.studies import STUDIES, load_all, run_study
from madloop.studies import mad_fresh

load_all()


@pytest.fixture
def one_torch_thread():
    """ci runs are tiny: torch's second intra-op thread only adds synchronisation, which on a busy machine
    (spin-waiting for a core) makes a one-second study take a minute."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", STUDIES.names())
def test_every_study_writes_its_table_and_figures_at_ci_scale(name, tmp_path, one_torch_thread):
    paths = run_study(name, "ci", tmp_path, jobs=1)
    table = tmp_path / f"{name}.csv"
    assert table in paths
    df = pd.read_csv(table)
    assert len(df) and {"metric", "gen", "mean", "ci_low", "ci_high"} <= set(df.columns)
    figures = [p for p in paths if p.suffix in (".png", ".pdf")]
    stems = {suffix: {p.stem for p in figures if p.suffix == suffix} for suffix in (".png", ".pdf")}
    assert figures and stems[".png"] == stems[".pdf"]  # every figure as PNG and PDF
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0, p


def test_every_study_lists_with_a_description():
    names = STUDIES.names()
    assert {"mad-bias", "mad-fresh", "accumulate"} <= set(names)
    for name in names:
        assert STUDIES[name].description and set(STUDIES[name].scales) == {"ci", "cpu", "gpu"}


def test_sampling_bias_keeps_precision_and_loses_recall(tmp_path):
    # SPEC E2's expected shape on the Gaussian model, fully synthetic loop, after a few generations.
    settings = dict(loop="fully_synthetic", n_real=50, n_synth=50, gens=6, runs=20, n_eval=300, n_ref=300,
                    metrics=("precision", "recall"), seed=3)
    res = madloop.sweep({"lam": [1.0, 0.5]}, out=tmp_path, **settings).summary()
    last = res[res.gen == 6].set_index(["lam", "metric"])["mean"]
    assert last[(0.5, "precision")] > 0.9 and last[(1.0, "precision")] > 0.9
    assert last[(0.5, "recall")] < 0.5 < last[(1.0, "recall")]


def test_importing_the_studies_registers_no_component():
    code = ("import madloop; from madloop.studies import load_all\n"
            "tables = (madloop.DATA, madloop.MODELS, madloop.ALGOS, madloop.METRICS, madloop.LOOPS)\n"
            "before = [t.names() for t in tables]; load_all()\n"
            "assert [t.names() for t in tables] == before, [t.names() for t in tables]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_first_subset_fits_the_first_model_to_the_first_points_only():
    x = np.random.default_rng(0).standard_normal((3, 40, 2))
    rng = RunRNG(0, range(0, 3), 1, "train")
    algo, spec = mad_fresh.FirstSubset(n_first=5), Gaussian()
    first = algo.train(spec, Samples(x), rng, None)
    np.testing.assert_allclose(first.mean, x[:, :5].mean(1))
    later = algo.train(spec, Samples(x), rng, first)
    np.testing.assert_allclose(later.mean, x.mean(1))
    with pytest.raises(ValueError, match="n_first=50 exceeds the 40 points"):
        mad_fresh.FirstSubset(n_first=50).train(spec, Samples(x), rng, None)


def test_effective_size_inverts_the_real_only_curve():
    n = np.array([2.0, 10, 50, 250, 1000])
    dist = 3.0 / np.sqrt(n)
    np.testing.assert_allclose(mad_fresh.effective_size(n, dist, 3.0 / np.sqrt([7.0, 300.0])), [7.0, 300.0])
    # Beyond the grid the answer is clipped to its ends.
    np.testing.assert_allclose(mad_fresh.effective_size(n, dist, np.array([10.0, 1e-3])), [2.0, 1000.0])


def test_effective_sample_size_of_the_mean_matches_spec_section_6():
    n_r, n_s = 100, 200
    p = dict(lams=(1.0,), n_reals=(n_r,), n_synths=(n_s,), runs=4000, burn=4, metrics=("true_mean_err",),
             curve_range=(50, 400), curve_points=10, curve_runs=20000)
    ne = mad_fresh.effective_sizes(mad_fresh.real_only(p, 1), mad_fresh.loop_limits(p, 1)).iloc[0]
    expected = mad_fresh.closed_form_mean(n_r, n_s)  # 166.7: more than n_r, less than n_r + n_s
    assert ne.ci_low <= expected * 1.03 and ne.ci_high >= expected * 0.97, ne
    assert abs(ne["mean"] / expected - 1) < 0.05, ne


def test_e1_compares_every_arm_with_the_standard_arm_run_by_run(tmp_path):
    from madloop.studies import sims_gaussian_2d as e1

    settings = dict(loop="augmentation", runs=6, gens=4, n_real=30, n_synth=30, n_eval=40, n_ref=40, metrics=("w2",))
    # Two arms of one seed (lam stands in for omega).
    points = [dict(network="paper", kind="standard", n_synth=30, omega=0.0),
              dict(network="paper", kind="sims", n_synth=30, omega=1.0)]
    results = [madloop.run(out=tmp_path / "a", **settings), madloop.run(out=tmp_path / "b", lam=0.6, **settings)]
    table = e1.versus_standard(points, results, (2, 4)).set_index(["omega", "gen", "late"])
    standard, arm = table.loc[0.0], table.loc[1.0]
    assert (standard["diff"] == 0).all() and standard.loc[(1, False), "vs_first"] == 1.0
    expected = madloop.compare(results[0], results[1], "w2", (2, 4)).set_index(["gen", "late"])
    np.testing.assert_allclose(arm[["diff", "diff_low", "diff_high"]].to_numpy(),
                               expected.loc[arm.index, ["diff", "lo", "hi"]].to_numpy())
    values, first = results[1].per_run("w2"), results[0].per_run("w2")[1]
    late = arm.loc[(2, True)]  # the window's row: each run's mean over t = 2..4
    assert late["mean"] == pytest.approx(values[[2, 3, 4]].mean(axis=1).mean())
    assert late.vs_first == pytest.approx(late["mean"] / first.mean())
    assert late.vs_first_low < late.vs_first < late.vs_first_high
    with pytest.raises(ValueError, match="need the standard arm"):
        e1.versus_standard(points[1:], results[1:], (2, 4))
    other = [points[0], dict(points[1], network="fitting")]  # a standard arm of another network is no partner
    with pytest.raises(ValueError, match="network 'fitting' at"):
        e1.versus_standard(other, results, (2, 4))
    first = e1.versus_standard(points, results, None, part="gen1-versus-standard")  # no window: per generation
    assert not first.late.any() and (first.part == "gen1-versus-standard").all()


@pytest.mark.parametrize("scale", ["ci", "cpu", "gpu"])
def test_e1_arms_are_valid_runs_and_the_controls_share_sims_budget(scale):
    from madloop.config import resolve
    from madloop.studies import sims_gaussian_2d as e1

    p = STUDIES[e1.NAME].scales[scale]
    points = e1.arms(p, p["loop_omegas"], p["control_omegas"], gens=p["gens"], n_synth=max(p["sizes"]))
    assert {(q["network"], q["kind"]) for q in points} == {(n, k) for n in p["networks"]
                                                           for k in ("standard", *e1.KINDS)}
    for q in points:
        cfg = resolve({**e1.BASE, **{k: v for k, v in q.items() if k not in e1.LABELS}, "runs": p["runs"]})
        net, algo = p["networks"][q["network"]], cfg.algo_options
        assert cfg.model_options["epochs"] == net["epochs"]
        if q["kind"] == "real":  # n_aux <= n_real, and the same points seen as SIMS's fine-tune
            assert algo["n_aux"] <= cfg.n_real and algo["aux_images"] == net["aux_epochs"] * p["n_aux"]
        if q["kind"] == "autoguidance":  # the bad model: a quarter of the base's epochs
            assert algo["aux_epochs"] is None and algo["aux_images"] is None
    with pytest.raises(ValueError, match="unknown kind"):
        e1.arm("guidance", 1.0, e1.NETWORKS["paper"], 2000)
    # A tuned network carries its own n_aux and aux_epochs (``tune``): they reach SIMS, not the DDPM's options.
    tune = p["tune"]
    for n_aux in tune["n_aux"]:
        net = dict(p["networks"][tune["network"]], n_aux=n_aux, aux_epochs=tune["aux_epochs"][0])
        cfg = resolve({**e1.BASE, **e1.arm("sims", 1.0, net, p["n_aux"]), "gens": 1, "n_synth": 1000})
        assert cfg.algo_options["n_aux"] == n_aux and cfg.algo_options["aux_epochs"] == tune["aux_epochs"][0]


def test_e3_measures_the_law_the_loop_samples_from():
    from madloop.metrics.base import Evaluation
    from madloop.models.gaussian import GaussianModel

    mu, Sigma = np.zeros(2), np.array([[2.0, 1.0], [1.0, 2.0]])
    model = GaussianModel(np.stack([mu, mu + 1]), np.stack([Sigma, 0.5 * Sigma]))
    ev = Evaluation(None, np.zeros((1, 2)), model, truth=(mu, Sigma))
    # An exact fit sampled with lam sits at (1 - sqrt(lam)) sqrt(tr Sigma); lam = 1 is true_w2.
    assert mad_fresh.SampledW2(0.64)(ev)[0] == pytest.approx(0.2 * 2.0)
    np.testing.assert_allclose(mad_fresh.SampledW2(1.0)(ev), madloop.METRICS["true_w2"](ev))
    p = dict(lams=(1.0, 0.7), n_reals=(20,), n_synths=(20,), runs=500, burn=2, metrics=("true_w2",),
             curve_range=(5, 400), curve_points=8, curve_runs=500)
    ne = mad_fresh.effective_sizes(mad_fresh.real_only(p, 1), mad_fresh.loop_limits(p, 1))
    ne = ne.set_index(["lam", "metric"])["mean"]
    assert ne[1.0, "sampled_w2"] == ne[1.0, "true_w2"] and ne[0.7, "sampled_w2"] < ne[0.7, "true_w2"]


def test_sims_images_pairs_each_sampler_with_the_base_and_with_the_controls_draw_by_draw():
    """A known answer by hand: SIMS is 0.1 better than autoguidance on every draw, whatever the draws' spread."""
    from madloop.studies.sims_images import paired, versus

    rows = []
    for run in range(4):
        for draw in range(3):
            level = run + 10 * draw  # a large spread between runs and draws that pairing removes
            rows += [dict(kind="base", budget=0, omega=0.0, run=run, draw=draw, fid=level + 1.0, share_low=0.5),
                     dict(kind="sims", budget=8, omega=0.5, run=run, draw=draw, fid=level + 0.7 + 0.01 * run, share_low=0.5),
                     dict(kind="autoguidance", budget=8, omega=0.5, run=run, draw=draw, fid=level + 0.8 + 0.01 * run,
                          share_low=0.5),
                     dict(kind="real", budget=8, omega=0.5, run=run, draw=draw, fid=level + 0.7 + 0.02 * run, share_low=0.5)]
    raw = pd.DataFrame(rows)
    vs = versus(raw).set_index("control")
    assert vs.loc["autoguidance", "diff"] == pytest.approx(-0.1)
    assert vs.loc["autoguidance", "diff_lo"] == pytest.approx(-0.1) and vs.loc["autoguidance", "n"] == 4
    # against real: -0.01 * run, mean -0.015, Student t with 3 degrees of freedom
    half = stats.t.ppf(0.975, 3) * np.std([0, -0.01, -0.02, -0.03], ddof=1) / 2
    assert vs.loc["real", "diff"] == pytest.approx(-0.015)
    assert (vs.loc["real", "diff_lo"], vs.loc["real", "diff_hi"]) == pytest.approx((-0.015 - half, -0.015 + half))
    table = paired(raw, metrics=("fid",)).set_index("kind")
    assert table.loc["sims", "diff"] == pytest.approx(-0.3 + 0.015)
    assert table.loc["base", "diff"] == 0 and table.loc["sims", "draws"] == 3


def test_sims_images_runs_each_data_part_with_its_own_settings_into_one_table_per_kind(tmp_path, monkeypatch):
    """The cpu scale's ``more`` parts: each runs with its changes on top of the first part's settings (``more``
    left out, so a part's kept stages do not depend on the others), its figures named by its data set, and the
    tables stack the parts."""
    from madloop.studies import sims_images

    params = dict(STUDIES["sims-images"].scales["ci"], more=[dict(data="mnist", n_real=99, kinds=("sims", "real"))])
    seen = []

    def fake_groups(p, jobs):
        seen.append(p)
        rows = [dict(kind=kind, budget=b, omega=w, run=run, draw=draw, fid=1.0 + run + 0.1 * draw - w,
                     share_low=0.5 + 0.01 * run)
                for run in range(3) for draw in range(2)
                for kind, b, w in [("floor", 0, 0.0), ("base", 0, 0.0),
                                   *((k, 64, 0.5) for k in p.get("kinds", sims_images.KINDS))]]
        return pd.DataFrame(rows), {}

    monkeypatch.setattr(sims_images, "run_groups", fake_groups)
    paths = sims_images.make(params, tmp_path, 1)
    assert [p["data"] for p in seen] == ["digits", "mnist"] and all("more" not in p for p in seen)
    assert seen[1]["n_real"] == 99 and seen[1]["draws"] == seen[0]["draws"]
    table = pd.read_csv(tmp_path / "sims-images.csv")
    assert set(table.groupby("data").n_real.first().items()) == {("digits", 64), ("mnist", 99)}
    assert set(table[table.data == "mnist"].kind) == {"floor", "base", "sims", "real"}
    assert set(pd.read_csv(tmp_path / "sims-images-versus.csv").data) == {"digits", "mnist"}
    names = {p.name for p in paths}
    assert {"sims-images-digits-fid.png", "sims-images-mnist-fid.png", "sims-images-digits-shift.png"} <= names
    assert "sims-images-mnist-shift.png" not in names  # no shift kind in that part: no E6 panel


def test_a_study_interrupted_in_its_work_folder_continues_there_to_the_same_table(tmp_path, monkeypatch, capsys,
                                                                                   one_torch_thread):
    """`madloop study NAME --work DIR`: a second call reopens the runs the first finished (running none of them
    again), runs the rest, and writes the table of an uninterrupted study."""
    from madloop import runner
    from madloop.studies import accumulate

    run_study("accumulate", "ci", tmp_path / "whole", jobs=1)
    real_sweep, calls = accumulate.sweep, []

    def stop_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_sweep(*args, **kwargs)

    monkeypatch.setattr(accumulate, "sweep", stop_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_study("accumulate", "ci", tmp_path / "out", jobs=1, work=tmp_path / "work")
    done = set((tmp_path / "work").iterdir())
    assert len(done) == 2 * len(STUDIES["accumulate"].scales["ci"]["loops"])  # two sweeps over the loops

    monkeypatch.setattr(accumulate, "sweep", real_sweep)
    real_execute, executed = runner.execute, []
    monkeypatch.setattr(runner, "execute", lambda cfg, out, **kw: executed.append(out) or real_execute(cfg, out=out, **kw))
    capsys.readouterr()
    run_study("accumulate", "ci", tmp_path / "out", jobs=1, work=tmp_path / "work")
    runs = set((tmp_path / "work").iterdir())
    assert f"its {len(runs)} runs are kept in {tmp_path / 'work'}" in capsys.readouterr().out
    assert {Path(p).name for p in executed} == {p.name for p in runs - done}  # the finished runs were reopened
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "accumulate.csv"),
                                  pd.read_csv(tmp_path / "whole" / "accumulate.csv"))


def test_runs_in_a_work_folder_are_shared_by_config_and_a_changed_record_is_refused(tmp_path, one_torch_thread):
    from madloop.errors import MadloopError
    from madloop.studies.common import inside, sweep

    with inside(tmp_path) as kept:
        first = sweep({"lam": [1.0, 0.5]}, 1, gens=2, runs=2)
    with inside(tmp_path) as again:  # a subset of the points in another order: the same runs, reopened
        second = sweep({"lam": [0.5, 1.0, 0.5]}, 1, gens=2, runs=2)
    assert len(set(kept)) == 2 and again == kept[::-1] + kept[1:]
    pd.testing.assert_frame_equal(first.results[1].table, second.results[0].table)
    config = kept[1] / "config.json"
    meta = json.loads(config.read_text())
    meta["config"]["lam"] = 0.7
    config.write_text(json.dumps(meta))
    with inside(tmp_path), pytest.raises(MadloopError, match="was edited after the run was made.*remove"):
        sweep({"lam": [1.0, 0.5]}, 1, gens=2, runs=2)  # the marker's digest of the config no longer matches
    (kept[1] / ".madloop").write_text('{"madloop": "0.1.0", "format": 1}')  # a run from before markers held a digest
    with inside(tmp_path), pytest.raises(MadloopError, match="records other settings.*remove"):
        sweep({"lam": [1.0, 0.5]}, 1, gens=2, runs=2)
    config.write_text('{"format": 1, "config": {')  # truncated
    with inside(tmp_path), pytest.raises(MadloopError, match="remove"):
        sweep({"lam": [1.0, 0.5]}, 1, gens=2, runs=2)
    for f in kept[1].iterdir():  # a foreign folder in the way: refused, and left as it was
        f.unlink() if f.is_file() else shutil.rmtree(f)
    (kept[1] / "mine.txt").write_text("precious")
    with inside(tmp_path), pytest.raises(MadloopError, match="holds files but no run; move them away"):
        sweep({"lam": [1.0, 0.5]}, 1, gens=2, runs=2)
    assert [f.name for f in kept[1].iterdir()] == ["mine.txt"]


def test_a_study_without_sweeps_says_its_work_folder_keeps_nothing(tmp_path, capsys, one_torch_thread):
    run_study("gaussian-collapse", "ci", tmp_path / "out", jobs=1, work=tmp_path / "work")
    assert "runs no sweeps, so" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["accumulate", "sims-shift"])
def test_a_work_folder_that_is_a_file_is_refused_before_anything_runs(name, tmp_path):
    from madloop.errors import MadloopError

    (tmp_path / "work").write_text("mine")
    with pytest.raises(MadloopError, match="work folder .* is a file"):
        run_study(name, "ci", tmp_path / "out", jobs=1, work=tmp_path / "work")
    assert (tmp_path / "work").read_text() == "mine" and not (tmp_path / "out").exists()


def test_e1_versus_size_pairs_the_standard_arm_across_sizes_over_the_window(tmp_path):
    from madloop.studies import sims_gaussian_2d as e1

    settings = dict(loop="augmentation", runs=6, gens=4, n_real=30, n_eval=40, n_ref=40, metrics=("w2",))
    points = [dict(network="paper", kind="standard", n_synth=n, omega=0.0) for n in (10, 60)]
    results = [madloop.run(out=tmp_path / f"s{n}", n_synth=n, **settings) for n in (10, 60)]
    row = e1.versus_size(points, results, (2, 4)).iloc[0]
    per_run = [r.per_run("w2")[[2, 3, 4]].mean(axis=1) for r in results]
    assert row.n_synth == 60 and row.n_synth_low == 10 and row["diff"] == pytest.approx((per_run[1] - per_run[0]).mean())
    assert row.diff_low < row["diff"] < row.diff_high
    assert e1.versus_size(points[:1], results[:1], (2, 4)).empty  # one |S|: nothing to compare


def e1_table(first_diff, sims_ratio, late_diff, size_diff, sizes=(250, 1000)):
    """A minimal E1 table: one network, SIMS at omega 1 beside standard at each of ``sizes``; each difference and
    SIMS's convergence ratio is (value, low, high); standard's ratio is 2.0 [1.5, 2.5]."""
    rows = [dict(part="self-improvement", kind="standard", omega=0.0, gen=g, mean=m) for g, m in ((0, 0.25), (1, 0.8))]
    rows += [dict(part="gen1-versus-standard", kind="sims", omega=1.0, gen=1, diff=first_diff[0],
                  diff_low=first_diff[1], diff_high=first_diff[2])]
    for size in sizes:
        for kind, omega, diff, ratio in (("standard", 0.0, (0, 0, 0), (2.0, 1.5, 2.5)), ("sims", 1.0, late_diff, sims_ratio)):
            rows.append(dict(part="loops", kind=kind, omega=omega, n_synth=size, gen=1, convergence_ratio=ratio[0],
                             convergence_ratio_low=ratio[1], convergence_ratio_high=ratio[2],
                             excess_ratio=2 * ratio[0], excess_ratio_low=np.nan, excess_ratio_high=np.nan))
            rows.append(dict(part="versus-standard", kind=kind, omega=omega, n_synth=size, gen=20, late=True,
                             mean=0.8 * ratio[0], diff=diff[0], diff_low=diff[1], diff_high=diff[2]))
    rows.append(dict(part="versus-size", kind="standard", omega=0.0, n_synth=max(sizes), n_synth_low=min(sizes), gen=20,
                     late=True, diff=size_diff[0], diff_low=size_diff[1], diff_high=size_diff[2]))
    return pd.DataFrame(rows).assign(network="paper")


E1_CLAIMS = ["self-improvement at generation 1"] + ["MAD under standard training", "prevention", "mitigation"] * 4 + [
    "MAD grows with |S^t|"]


@pytest.mark.parametrize("first, sims_ratio, late, size, verdicts", [
    # SIMS's ratio 1.1 [0.9, 1.3] straddles 1 while it beats standard: prevention not shown, mitigation holds (the
    # old table called this prevention, its CI reaching below the paper's 1.204).
    ((-0.1, -0.2, -0.01), (1.1, 0.9, 1.3), (-0.5, -0.8, -0.2), (0.4, 0.1, 0.7),
     dict(first="holds", standard="holds", prevention="not shown", mitigation="holds", growth="holds")),
    ((-0.1, -0.2, -0.01), (0.95, 0.9, 0.99), (-0.5, -0.8, -0.2), (0.4, 0.1, 0.7),
     dict(first="holds", standard="holds", prevention="holds", mitigation="holds", growth="holds")),
    ((0.1, 0.01, 0.2), (1.6, 1.3, 1.9), (-0.5, -0.8, -0.2), (0.4, -0.1, 0.7),
     dict(first="does not hold", standard="holds", prevention="does not hold", mitigation="holds", growth="not shown")),
    ((-0.1, -0.2, 0.05), (1.1, 0.9, 1.3), (0.5, -0.1, 0.9), (-0.4, -0.7, -0.1),
     dict(first="not shown", standard="holds", prevention="not shown", mitigation="not shown", growth="does not hold")),
    ((-0.1, -0.2, -0.01), (2.1, 1.9, 2.3), (0.5, 0.1, 0.9), (0.4, 0.1, 0.7),
     dict(first="holds", standard="holds", prevention="does not hold", mitigation="does not hold", growth="holds")),
])
def test_e1_fidelity_judges_each_size_against_its_own_paper_values(first, sims_ratio, late, size, verdicts, tmp_path):
    from madloop.studies import sims_gaussian_2d as e1

    fid = e1.fidelity(e1_table(first, sims_ratio, late, size))
    assert list(fid.claim) == E1_CLAIMS and list(fid.n_synth.iloc[1:-1]) == [s for s in (125, 250, 500, 1000)
                                                                            for _ in range(3)]
    by = fid.set_index(["claim", "n_synth"])
    for size in (125, 500):  # sizes the paper ran and the table lacks
        assert (by.xs(size, level="n_synth").verdict == "awaits a run").all()
    for size, (sims, standard), where in ((250, (1.013, 2.46), "inside"), (1000, (1.204, 6.69), "above")):
        row = by.xs(size, level="n_synth")
        assert row.loc["MAD under standard training", "verdict"] == verdicts["standard"]
        assert row.loc["prevention", "verdict"] == verdicts["prevention"]
        assert row.loc["mitigation", "verdict"] == verdicts["mitigation"]
        # each size's own paper values, and where they lie against madloop's CI (standard's: 1.5-2.5)
        assert f"{standard:g}" in row.loc["MAD under standard training", "paper"]
        assert f"the paper's {standard:g}: {where} this CI" in row.loc["MAD under standard training", "madloop"]
        assert f"{sims:g}" in row.loc["prevention", "paper"] and f"{standard:g}" in row.loc["mitigation", "paper"]
        # the excess ratio beside the raw one, without an interval where the table has none
        assert f"excess over the floor {2 * sims_ratio[0]:.3g} (no CI)" in row.loc["prevention", "madloop"]
    assert fid.verdict.iloc[0] == verdicts["first"] and fid.verdict.iloc[-1] == verdicts["growth"]
    assert "2.46 at 250, 6.69 at 1000" in fid.paper.iloc[-1] and "floor 0.25" in fid.madloop.iloc[0]
    p = dict(runs=8, n_aux=2000, networks={"paper": dict(epochs=100, aux_epochs=50)}, window=(20, 60))
    md = e1.write_fidelity(fid, p, tmp_path)[1].read_text().splitlines()
    rows = [line for line in md if line.startswith("| paper")]
    assert len(rows) == len(E1_CLAIMS) and all(line.replace("\\|", "").count("|") == 6 for line in rows)  # escaped


@pytest.mark.parametrize("low, high, below, expected", [
    (-0.3, -0.1, True, "holds"), (0.1, 0.3, True, "does not hold"), (-0.1, 0.1, True, "not shown"),
    (0.1, 0.3, False, "holds"), (-0.3, -0.1, False, "does not hold"), (np.nan, np.nan, True, "not shown")])
def test_e1_verdict_holds_only_when_the_ci_lies_wholly_on_the_claims_side(low, high, below, expected):
    from madloop.studies.sims_gaussian_2d import verdict

    assert verdict(low, high, 0.0, below) == expected


def test_e1_excess_ratio_is_of_the_distance_above_the_floor(tmp_path):
    from madloop.studies import sims_gaussian_2d as e1

    # From the means of a table that holds no runs: floor 0.25, generation 1 0.35, window (t = 2, 3) 0.45.
    rows = [dict(part="loops", network="paper", kind="standard", n_synth=250, omega=0.0, gen=g, mean=m)
            for g, m in enumerate((0.25, 0.35, 0.4, 0.5))]
    table = e1.excess_from_means(pd.DataFrame(rows + [dict(part="versus-standard", gen=2, mean=0.45)]), (2, 3))
    loops = table[table.part == "loops"]
    assert loops.excess_ratio.to_numpy() == pytest.approx([2.0] * 4)  # (0.45 - 0.25) / (0.35 - 0.25); raw 1.29
    assert loops.excess_ratio_low.isna().all() and table[table.part != "loops"].excess_ratio.isna().all()
    # From each run's values: the ratio of the mean excesses, each run less its own floor, with a paired interval.
    result = madloop.run(out=tmp_path / "r", loop="augmentation", runs=6, gens=3, n_real=30, n_synth=30, n_eval=40,
                         n_ref=40, metrics=("w2",))
    values = result.per_run("w2")
    r, lo, hi = e1.excess_ratio(result, "w2", (2, 3))
    expected = (values[[2, 3]].mean(axis=1) - values[0]).mean() / (values[1] - values[0]).mean()
    assert r == pytest.approx(expected) and lo < r < hi
    assert np.isnan(e1.excess_ratio(result, "w2", None)).all()


def test_e1_fidelity_is_remade_from_the_committed_table(tmp_path):
    """The committed table holds no per-run values: its excess ratios are point values and the note says why."""
    from madloop.studies import sims_gaussian_2d as e1

    committed = Path(__file__).parents[1] / "figures" / f"{e1.NAME}.csv"
    p = {k: v for k, v in e1.STUDY.scales["cpu"].items() if k != "tune"}
    csv, md = e1.remake(committed, p, tmp_path)
    fid = pd.read_csv(csv).set_index(["network", "claim", "n_synth"])
    assert fid.loc[("fitting", "MAD under standard training", 1000), "verdict"] == "holds"  # 1.15 [1.06, 1.24]
    assert "excess over the floor 2.08 (no CI)" in fid.loc[("fitting", "MAD under standard training", 1000), "madloop"]
    assert fid.loc[("paper", "prevention", 250), "verdict"] == "not shown"  # 1.21 [0.86, 1.62]
    assert set(fid.verdict) <= {"holds", "does not hold", "not shown", "awaits a run"}
    assert "a paired CI needs each run's values" in md.read_text()


def test_every_sampler_of_a_draw_starts_from_the_same_noise_and_labels(one_torch_thread):
    """Paired draws mean common random numbers: guidance of strength 0 is the base itself, so on the same noise
    and labels every kind at omega = 0 reproduces the base's FID on every run and draw (a shared, advancing
    stream would hand each sampler fresh noise instead)."""
    from madloop.studies import sims_images, sims_pollution, sims_shift

    p = dict(STUDIES["sims-images"].scales["ci"], runs=1, omegas=(0.0, 0.5), kinds=("sims", "decoder", "autoguidance"))
    raw, _ = sims_images.run_groups(p, 1)
    fid = raw[raw.omega == 0].set_index(["kind", "run", "draw"]).fid
    for kind in p["kinds"]:
        np.testing.assert_array_equal(fid[kind].to_numpy(), fid["base"].to_numpy())
    guided = raw[raw.omega == 0.5].set_index(["kind", "run", "draw"]).fid
    assert not np.allclose(guided["decoder"], guided["sims"])  # another auxiliary model, not SIMS's again
    # Keyed streams: a subset of the kinds gives the same values (omega 0.5 too), so a new kind can join
    # committed raw rows.
    alone, _ = sims_images.run_groups(dict(p, kinds=("decoder",)), 1)
    assert set(alone.kind) == {"floor", "base", "decoder"}
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), raw[raw.kind.isin(alone.kind)].reset_index(drop=True))
    pollution = dict(STUDIES["sims-pollution"].scales["ci"], runs=1, omegas=(0.0,))
    rows = pd.concat([sims_pollution.pollution_rows(pollution, m, 1) for m in (0, 32)])
    by = rows.set_index(["kind", "pollution", "run", "draw"]).fid
    np.testing.assert_array_equal(by["SIMS"].to_numpy(), by["ST"].to_numpy())
    assert not np.allclose(by["ST", 32].to_numpy(), by["ST", 0].to_numpy())  # the polluted model is another one
    shift = sims_shift.rows_of(dict(STUDIES["sims-shift"].scales["ci"], omegas=(0.0,)))
    base = shift[shift.kind == "base"].drop(columns=["kind", "omega"]).reset_index(drop=True)
    for kind in ("sims", "shift"):
        pd.testing.assert_frame_equal(shift[shift.kind == kind].drop(columns=["kind", "omega"]).reset_index(drop=True), base)


def test_an_image_study_killed_in_its_work_folder_resumes_from_its_last_stage(tmp_path, monkeypatch,
                                                                            one_torch_thread):
    """sims-images runs madloop.evaluate in the work folder, which keeps its stages (the base, each auxiliary, each
    draw): killed at its last draw, the study resumes without training anything again and writes the rows and
    grids of one go; a damaged stage is refused with its path."""
    import importlib

    from madloop.errors import MadloopError
    from madloop.models.unet import UNet
    from madloop.studies import common, sims_images

    evaluate = importlib.import_module("madloop.evaluate")  # the module: madloop.evaluate is the function
    p = dict(STUDIES["sims-images"].scales["ci"], runs=1, kinds=("sims", "real"))
    whole, pictures = sims_images.run_groups(p, 1)
    real_rows = evaluate.draw_rows

    def killed_at_the_last_draw(plan, *args):
        if args[-2] == p["draws"] - 1:
            raise KeyboardInterrupt
        return real_rows(plan, *args)

    monkeypatch.setattr(evaluate, "draw_rows", killed_at_the_last_draw)
    work = tmp_path / "work"
    with common.inside(work), pytest.raises(KeyboardInterrupt):
        sims_images.run_groups(p, 1)
    [folder] = work.iterdir()
    stages = sorted((folder / "parts").glob("stage-*.npz"))
    assert len(stages) == 3 and len(list((folder / "parts").glob("draw-*.parquet"))) == p["draws"] - 1

    def trains(*args, **kwargs):
        raise AssertionError("a kept model was trained again")

    monkeypatch.setattr(evaluate, "draw_rows", real_rows)
    monkeypatch.setattr(UNet, "fit", trains)
    monkeypatch.setattr(UNet, "finetune", trains)
    base = folder / "parts" / "stage-r00000000-base.npz"
    base.write_bytes(base.read_bytes()[:100])  # truncated
    with common.inside(work), pytest.raises(MadloopError, match=f"{base.name}.*remove it"):
        sims_images.run_groups(p, 1)
    base.unlink()
    monkeypatch.undo()
    monkeypatch.setattr(UNet, "finetune", trains)  # the base is trained again (its stage was removed), no auxiliary
    with common.inside(work):
        again, shown = sims_images.run_groups(p, 1)
    pd.testing.assert_frame_equal(again, whole)
    assert shown.keys() == pictures.keys() and all(np.array_equal(shown[k], pictures[k]) for k in pictures)
    assert [f.name for f in work.iterdir()] == [folder.name] and not (folder / "parts").exists()


def test_sims_pollution_and_sims_shift_reopen_their_kept_stages_without_training(tmp_path, monkeypatch,
                                                                                 one_torch_thread):
    from madloop.models.diffusion import DDPM
    from madloop.models.unet import UNet
    from madloop.studies import common, sims_pollution, sims_shift

    def trains(*args, **kwargs):
        raise AssertionError("a kept model was trained again")

    pollution = dict(STUDIES["sims-pollution"].scales["ci"], runs=1)
    shift = STUDIES["sims-shift"].scales["ci"]
    with common.inside(tmp_path):
        first = (sims_pollution.pollution_rows(pollution, 32, 1), sims_shift.rows_of(shift, tmp_path))
    for spec in (UNet, DDPM):
        monkeypatch.setattr(spec, "fit", trains)
        monkeypatch.setattr(spec, "finetune", trains)
    with common.inside(tmp_path):
        pd.testing.assert_frame_equal(sims_pollution.pollution_rows(pollution, 32, 1), first[0])
    pd.testing.assert_frame_equal(sims_shift.rows_of(shift, tmp_path), first[1])


def test_sims_pollution_pairs_simsp_with_the_polluted_standard_model():
    from madloop.studies.sims_pollution import summarise

    rows = []
    for run in range(3):
        for draw in range(2):
            level = run + 5 * draw
            for m, worse in ((0, 0.0), (100, 0.3)):
                rows += [dict(kind="ST", pollution=m, omega=0.0, run=run, draw=draw, fid=level + 1 + worse),
                         dict(kind="SIMS", pollution=m, omega=0.5, run=run, draw=draw, fid=level + 0.9 + worse)]
    table = summarise(pd.DataFrame(rows)).set_index(["kind", "pollution"])
    assert table.loc[("SIMS", 100), "diff"] == pytest.approx(0.2)  # against the clean ST-I
    assert table.loc[("SIMS", 100), "diff_own"] == pytest.approx(-0.1)  # against ST-P: SIMS helps it
    assert table.loc[("ST", 100), "diff_own"] == 0 and table.loc[("ST", 100), "diff"] == pytest.approx(0.3)


@pytest.mark.parametrize("scale", ["ci", "cpu", "gpu"])
@pytest.mark.parametrize("name", ["mad-bias", "mad-bias-flow-gan"])
def test_mad_bias_families_resolve_to_valid_runs_at_every_scale(name, scale):
    from madloop.studies import mad_bias

    p = STUDIES[name].scales[scale]
    for family, sizes in p["families"].items():
        for loop in p["loops"]:
            for lam in p["lams"]:
                cfg = madloop.resolve({**mad_bias.FAMILIES[family], "gens": p["gens"], "every": p["every"],
                                       "metrics": p["metrics"], **sizes, "loop": loop, "lam": lam})
                assert cfg.model == mad_bias.FAMILIES[family]["model"] and cfg.lam == lam


def test_e1_figures_leave_out_the_arms_that_blew_up_and_name_them(tmp_path):
    from madloop.studies import sims_gaussian_2d as e1

    def arm(kind, omega, size, values, late):
        rows = [dict(part="loops", network="fitting", kind=kind, omega=omega, n_synth=size, gen=g, mean=v)
                for g, v in enumerate(values)]
        return rows + [dict(part="versus-standard", network="fitting", kind=kind, omega=omega, n_synth=size, gen=1,
                            late=True, mean=late)]

    table = pd.DataFrame(arm("standard", 0.0, 250, [0.3, 0.4, 0.5], 0.45) + arm("sims", 1.0, 250, [0.3, 0.4, 29.0], 9.0)
                         + arm("real", 1.0, 250, [0.3, 2.0, 1e30], 1e29))  # the floor 0.3: 100 floors is 30
    blown = e1.blown_up(table, "fitting")
    assert blown[["kind", "omega", "n_synth"]].values.tolist() == [["real", 1.0, 250]]
    assert blown.late.iloc[0] == 1e29
    drawn, named = e1._drawn(table, table, "fitting")
    assert set(drawn.kind) == {"standard", "sims"} and named.equals(blown)
    drawn, named = e1._drawn(table[table.kind != "real"], table, "fitting")  # a figure without that arm
    assert set(drawn.kind) == {"standard", "sims"} and named.empty  # names nothing
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xlabel("ω")
    e1._blown_note(ax, blown)
    assert "real ω = 1 at |S^t| = 250 (late E[W2] 1e+29)" in ax.get_xlabel()
    plt.close(fig)


def test_sims_shift_images_reads_the_omega_where_the_share_reaches_the_target():
    from madloop.studies.sims_shift_images import reading

    rows = [dict(kind="base", budget=0, omega=0.0, metric="share_low", mean=0.5, ci_low=0.45, ci_high=0.55)]
    for omega, share in [(-1.0, 0.3), (1.0, 0.6), (2.0, 0.72), (3.0, 0.71)]:
        rows.append(dict(kind="shift", budget=8, omega=omega, metric="share_low", mean=share, ci_low=share - 0.05,
                         ci_high=share + 0.05))
        rows.append(dict(kind="sims", budget=8, omega=omega, metric="share_low", mean=0.5, ci_low=0.45, ci_high=0.55))
    out = reading(pd.DataFrame(rows)).set_index("kind")
    assert out.loc["shift", "omega_reaching_target"] == 2.0 and out.loc["shift", "best_share"] == 0.72
    assert np.isnan(out.loc["sims", "omega_reaching_target"]) and out.loc["sims", "base_share"] == 0.5


def test_the_memorisation_read_out_counts_copies_of_d_r_and_not_held_out_images():
    import madloop
    from madloop.images import pools
    from madloop.rng import Role, Streams
    from madloop.studies.sims_images import SEED, memorisation

    p = dict(data="digits", n_real=64, runs=2)
    src = madloop.DATA["digits"]()
    real = src.sample(64, Streams(SEED, range(0, 2), 2).at(0, Role.REAL)).x[0]  # run 0's D_r, as the evaluation draws it
    held_out = pools(src).reference.x[:20]
    out = memorisation({("copies", 0, 0.0): real[:20], ("held-out", 0, 0.0): held_out}, p).set_index("kind")
    assert out.loc["copies", "copies"] == 1.0 and out.loc["copies", "median_ratio"] == 0.0
    assert out.loc["held-out", "copies"] == 0.0 and out.loc["held-out", "median_ratio"] > 1.0
