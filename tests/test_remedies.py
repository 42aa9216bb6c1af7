"""Remedies for MADness (SPEC section 4b, madloop/remedies.py): each one's defining property, and the
golden-ratio law of real-data weighting (SPEC section 6) within Monte-Carlo error."""

import numpy as np
import pandas as pd
import pytest

import madloop
from madloop import remedies
from madloop.data import GaussianData, MixtureData
from madloop.errors import MadloopError
from madloop.gaussian import mean_cov
from madloop.models.exact import ExactGaussian, Stats
from madloop.models.gaussian import GaussianModel
from madloop.models.gmm import columns, em, initial_params, seeding_draws
from madloop.rng import Role, RunRNG, Streams
from madloop.runner import build
from madloop.samples import Samples

TRACE = 4.0  # tr Sigma of the default p_r = N(0, [[2, 1], [1, 2]])


def fitted_means(cfg) -> np.ndarray:
    """(gens, runs, d): every generation's fitted mean."""
    return np.stack([g.model.mean for g in madloop.generations(cfg, build(cfg), range(cfg.runs))])


# Real-data weighting.

def golden_ratio_law(w: float, n: int, m: int) -> float:
    """SPEC section 6: the stationary E||mu_hat - mu||^2 of the fresh data loop with real weight w."""
    k = n / m
    return TRACE / n * (w * w + k * (1 - w) ** 2) / (w * (2 - w))


def exact_moments(w: float, n: int, m: int, gens: int) -> np.ndarray:
    """E||mu_t - mu||^2 for t = 1..gens of the loop as madloop runs it (the covariance fitted by weighted
    maximum likelihood, not held at the truth), from the exact recursions of V_t = E||mu_t - mu||^2 and
    T_t = E tr Sigma_t: with mu_t = w xbar + (1 - w) ybar, xbar ~ N(mu, Sigma / n), ybar ~ N(mu_(t-1), Sigma_(t-1) / m),
        V_t = w^2 tr Sigma / n + (1 - w)^2 (V_(t-1) + T_(t-1) / m)
        T_t = w tr Sigma (n - 1) / n + (1 - w) T_(t-1) (m - 1) / m + w (1 - w) (tr Sigma / n + T_(t-1) / m + V_(t-1)).
    """
    v, t = TRACE / n, TRACE * (n - 1) / n
    out = [v]
    for _ in range(gens - 1):
        v, t = (w * w * TRACE / n + (1 - w) ** 2 * (v + t / m),
                w * TRACE * (n - 1) / n + (1 - w) * t * (m - 1) / m + w * (1 - w) * (TRACE / n + t / m + v))
        out.append(v)
    return np.array(out)


N_REAL, N_SYNTH, GENS, LATE = 100, 100, 30, 10
W_STAR = (np.sqrt(1 + 4) - 1) / 2  # k = n / m = 1: the golden ratio's inverse, 0.618


def late_errors(w: float, path: str, runs: int) -> np.ndarray:
    """Each run's mean of ||mu_t - mu||^2 over the generations t > LATE (runs are independent; generations are not)."""
    cfg = madloop.resolve(dict(loop="fresh", n_real=N_REAL, n_synth=N_SYNTH, gens=GENS, runs=runs, seed=7, real_weight=w,
                               path=path))
    return (fitted_means(cfg)[LATE:] ** 2).sum(-1).mean(0)


@pytest.fixture(scope="module")
def exact_path_errors():
    return {w: late_errors(w, "exact", 20000) for w in (W_STAR, 0.5, 0.9)}


@pytest.mark.parametrize("w", [W_STAR, 0.5, 0.9])
def test_golden_ratio_law_of_the_fresh_data_loop(w, exact_path_errors):
    err = exact_path_errors[w]
    se = err.std(ddof=1) / np.sqrt(len(err))
    expected = exact_moments(w, N_REAL, N_SYNTH, GENS)[LATE:].mean()
    assert abs(err.mean() - expected) < 4 * se, (err.mean(), expected, se)
    # Fitting the covariance moves the law by less than 0.5%: the SPEC's closed form holds within that.
    law = golden_ratio_law(w, N_REAL, N_SYNTH)
    assert abs(expected / law - 1) < 0.005
    assert abs(err.mean() - law) < 4 * se + abs(expected - law)


def test_the_golden_ratio_weight_is_the_best(exact_path_errors):
    # Paired runs (same seed: same real draws): w* beats the count share 1/2 and w = 0.9, by the law's margins.
    best = exact_path_errors[W_STAR]
    assert golden_ratio_law(W_STAR, N_REAL, N_SYNTH) == pytest.approx(W_STAR * TRACE / N_REAL)
    for w in (0.5, 0.9):
        d = exact_path_errors[w] - best
        se = d.std(ddof=1) / np.sqrt(len(d))
        margin = golden_ratio_law(w, N_REAL, N_SYNTH) - golden_ratio_law(W_STAR, N_REAL, N_SYNTH)
        assert d.mean() > 10 * se
        assert abs(d.mean() - margin) < 4 * se + 0.01 * margin


def test_golden_ratio_law_on_the_sample_path():
    err = late_errors(W_STAR, "samples", 3000)
    se = err.std(ddof=1) / np.sqrt(len(err))
    assert abs(err.mean() - exact_moments(W_STAR, N_REAL, N_SYNTH, GENS)[LATE:].mean()) < 4 * se


TINY_DDPM = dict(model="ddpm", width=8, depth=2, epochs=2, batch=16, steps=10)


@pytest.mark.parametrize("family", [dict(path="samples"), dict(path="exact"), dict(model="gmm", data="mixture", iters=20),
                                    TINY_DDPM], ids=["gaussian-samples", "gaussian-exact", "gmm", "ddpm"])
@pytest.mark.parametrize("loop", ["augmentation", "fresh"])
def test_the_count_share_as_real_weight_gives_todays_table(family, loop, tmp_path):
    n_real, n_synth = 30, 20
    settings = dict(loop=loop, n_real=n_real, n_synth=n_synth, gens=4, runs=6, n_eval=40, n_ref=40, seed=3, **family)
    today = madloop.run(out=tmp_path / "a", **settings).table
    weighted = madloop.run(out=tmp_path / "b", real_weight=n_real / (n_real + n_synth), **settings).table
    assert len(today) and (today[["run", "gen", "metric"]].values == weighted[["run", "gen", "metric"]].values).all()
    np.testing.assert_allclose(weighted.value, today.value, rtol=1e-12, atol=1e-12)


def test_real_weight_one_ignores_the_synthetic_data():
    cfg = madloop.resolve(dict(loop="augmentation", n_real=20, n_synth=50, gens=4, runs=5, real_weight=1.0, path="samples"))
    models = [g.model for g in madloop.generations(cfg, build(cfg), range(5))]
    for m in models[1:]:  # every generation refits D_r alone
        np.testing.assert_allclose(m.mean, models[0].mean, rtol=1e-12)
        np.testing.assert_allclose(m.cov, models[0].cov, rtol=1e-12)


def test_real_weight_moves_the_ddpm_loop(tmp_path):
    # The DDPM fits weighted data: a real weight other than the count share changes generations 2 on, not 1.
    settings = dict(loop="augmentation", n_real=30, n_synth=30, gens=2, runs=3, n_eval=30, n_ref=30, seed=3, metrics=("w2",),
                    **TINY_DDPM)
    today = madloop.run(out=tmp_path / "a", **settings).table
    heavy = madloop.run(out=tmp_path / "b", real_weight=0.9, **settings).table
    first = today.gen == 1
    assert np.array_equal(today.value[first], heavy.value[first]) and not np.array_equal(today.value, heavy.value)


def test_weights_act_as_repeated_points():
    rng = np.random.default_rng(0)
    x, reps = rng.standard_normal((3, 12, 2)), rng.integers(1, 4, (3, 12))
    reps[:, -1] += reps.sum(1).max() - reps.sum(1)  # one total count for all runs: a rectangular array
    repeated = np.stack([np.repeat(x[r], reps[r], axis=0) for r in range(3)])
    for got, want in zip(mean_cov(x, w=reps.astype(float)), mean_cov(repeated)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # Equal weights: the unweighted fit, including the unbiased covariance.
    for ddof in (0, 1):
        for got, want in zip(mean_cov(x, ddof, np.full((3, 12), 0.3)), mean_cov(x, ddof)):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    # EM from one start: integer weights (scaled to sum to n, as the gmm's fit scales them) give the fit of
    # the repeated points.
    u = seeding_draws(RunRNG(0, range(3), 1, "fit"), 2)
    start = initial_params(columns(repeated), u, 1e-6)
    v = 12 * reps / reps.sum(1, keepdims=True)
    for got, want in zip(em(columns(x), *start, 1e-6, 0.0, 5, v), em(columns(repeated), *start, 1e-6, 0.0, 5)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_weighted_statistics_pool_like_weighted_points():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 7, 2)), 2 + rng.standard_normal((4, 5, 2))
    pooled = Stats.concat([Stats.of(a).weighted(0.3), Stats.of(b).weighted(0.7)])
    points = Samples.concat([Samples(a).weighted(0.3), Samples(b).weighted(0.7)])
    np.testing.assert_allclose(points.w.sum(1), 1.0)
    for unbiased in (False, True):
        model = ExactGaussian(unbiased).fit(pooled, None)
        mean, cov = mean_cov(points.x, int(unbiased), points.w)
        np.testing.assert_allclose(model.mean, mean, rtol=1e-12)
        np.testing.assert_allclose(model.cov, cov, rtol=1e-12)
    with pytest.raises(ValueError, match="weighted and unweighted"):
        Stats.concat([Stats.of(a).weighted(0.3), Stats.of(b)])
    with pytest.raises(ValueError, match="weighted and unweighted"):
        Samples.concat([Samples(a).weighted(0.3), Samples(b)])
    assert np.array_equal(points.take(np.array([[0, 8]] * 4)).w, points.w[:, [0, 8]])


@pytest.mark.parametrize("settings, message", [
    (dict(real_weight=0.5), "fully synthetic loop trains on synthetic data alone"),
    (dict(loop="fresh", real_weight=1.5), r"real_weight must be in \[0, 1\], got 1.5"),
    (dict(loop="fresh", real_weight=float("nan")), "real_weight must be a finite number or none, got nan"),
    (dict(loop="fresh", model="unet", real_weight=0.5), "real_weight needs a model family whose fit takes sample weights; 'unet'"),
])
def test_bad_real_weights_are_one_line(settings, message):
    if settings.get("model", "gaussian") not in madloop.MODELS:
        pytest.skip(f"{settings['model']} is not registered")
    with pytest.raises(MadloopError, match=message):
        madloop.resolve(settings)


# Curation.

def curation_inputs(runs=4, n=300, spread=4.0, seed=0):
    """p_r = the default 2D Gaussian; G^t = N(0, spread * Sigma) for every run (wider than p_r, so r = p_r / p_model
    is bounded, largest at the mean); S^t = n draws of G^t; the curation streams of generation 1."""
    data = GaussianData()
    model = GaussianModel(np.zeros((runs, 2)), np.broadcast_to(spread * data.truth[1], (runs, 2, 2)).copy())
    streams = Streams(seed, range(runs), runs)
    synth = model.sample(n, streams.at(1, Role.SYNTH))
    return data, model, synth, streams.at(1, Role.CANDIDATES), streams.at(1, Role.CURATE)


def test_first_accepted_keeps_only_accepted_candidates_in_draw_order():
    rng = np.random.default_rng(0)
    ok, prob = rng.random((50, 40)) < 0.3, rng.random((50, 40))
    index, share = remedies.first_accepted(ok, prob, 8)
    for r in range(50):
        accepted = np.flatnonzero(ok[r])
        if len(accepted) >= 8:  # enough accepted: exactly the first 8 of them, nothing rejected
            assert list(index[r]) == list(accepted[:8])
            assert share[r] == 8 / (accepted[7] + 1)
        else:  # too few: all accepted ones, then the rejected of highest probability
            rejected = np.flatnonzero(~ok[r])
            assert list(index[r]) == [*accepted, *rejected[np.argsort(-prob[r, rejected], kind="stable")][: 8 - len(accepted)]]
            assert share[r] == len(accepted) / 40


def test_oracle_curation_at_full_strength_keeps_accepted_samples_that_follow_p_r():
    data, model, synth, candidates, accept = curation_inputs()
    kept, share = remedies.curate("oracle", 1.0, data, model, synth, 1.0, candidates, accept)
    # Replay the verifier: S^t, then rounds of n candidates, each accepted with probability r / M (M: the largest
    # ratio among S^t's own); the kept samples are the first n accepted ones, and nothing else.
    streams = Streams(0, range(4), 4)
    draws, judge = streams.at(1, Role.CANDIDATES), streams.at(1, Role.CURATE)  # each advances with every draw
    rounds = [synth.x] + [model.sample(synth.n, draws).x for _ in range(remedies.MAX_DRAWS - 1)]
    log_r = [data.log_prob(x) - model.log_prob(x) for x in rounds]
    bound = log_r[0].max(1, keepdims=True)
    ok = np.concatenate([judge.random(synth.n) < np.exp(np.minimum(lr - bound, 0)) for lr in log_r], axis=1)
    x = np.concatenate(rounds, axis=1)
    for r in range(4):
        np.testing.assert_array_equal(kept.x[r], x[r][ok[r]][: synth.n])
    # Rejection sampling from p_r: the kept points' covariance is Sigma, not the model's 4 Sigma; the accepted share is
    # about E_model[r / M] = 1 / M (M: the largest ratio, 4 at the mean, a little less when estimated).
    _, cov = mean_cov(kept.x)
    np.testing.assert_allclose(cov.mean(0), data.truth[1], atol=0.25)
    assert kept.n == synth.n and (0.2 < share).all() and (share < 0.3).all()


def test_quantile_curation_keeps_the_best_scores():
    data, model, synth, candidates, accept = curation_inputs(n=50)
    kept, share = remedies.curate("quantile", 0.75, data, model, synth, 1.0, candidates, accept)
    pool = Samples.concat([synth, model.sample(150, Streams(0, range(4), 4).at(1, Role.CANDIDATES))])
    score, kept_score = data.log_prob(pool.x), data.log_prob(kept.x)
    assert kept.n == 50 and np.allclose(share, 50 / 200)
    for r in range(4):
        assert kept_score[r].min() >= np.sort(score[r])[-50]  # the top quarter of the 200 candidates


@pytest.mark.parametrize("kind", remedies.CURATORS)
def test_curation_at_strength_zero_changes_nothing(kind):
    data, model, synth, candidates, accept = curation_inputs(n=30)
    kept, share = remedies.curate(kind, 0.0, data, model, synth, 1.0, candidates, accept)
    assert np.array_equal(kept.x, synth.x) and (share == 1).all()
    settings = dict(loop="augmentation", n_real=30, n_synth=30, gens=4, runs=5, seed=2, path="samples")
    plain = madloop.resolve(settings)
    zero = madloop.resolve({**settings, "curate": kind, "curate_strength": 0.0})
    for a, b in zip(madloop.generations(plain, build(plain), range(5)), madloop.generations(zero, build(zero), range(5))):
        assert np.array_equal(a.model.mean, b.model.mean) and np.array_equal(a.model.cov, b.model.cov)
        assert np.array_equal(a.synth.x, b.synth.x) and (b.cost["accepted"] == 1).all()


@pytest.mark.parametrize("remedy", [dict(curate="oracle"), dict(curate="quantile", curate_strength=0.8),
                                    dict(correct=1.0, correct_steps=3)])
def test_remedies_do_not_depend_on_how_runs_are_chunked(remedy):
    cfg = madloop.resolve(dict(loop="fresh", n_real=20, n_synth=20, gens=3, runs=6, seed=5, model="gmm", data="mixture",
                               iters=5, **remedy))
    whole = list(madloop.generations(cfg, build(cfg), range(0, 6)))
    parts = [list(madloop.generations(cfg, build(cfg), r)) for r in (range(0, 1), range(1, 6))]
    for t, g in enumerate(whole):
        np.testing.assert_array_equal(g.synth.x, np.concatenate([p[t].synth.x for p in parts]))
        for name, v in g.cost.items():
            np.testing.assert_array_equal(v, np.concatenate([p[t].cost[name] for p in parts]))


def test_curation_records_its_cost_as_a_metric(tmp_path):
    res = madloop.run(out=tmp_path / "a", loop="fully_synthetic", n_real=30, n_synth=30, gens=3, runs=4, n_eval=30, n_ref=30,
                      curate="oracle", metrics=("w2",))
    assert res.config.metrics == ("w2", "accepted")
    share = res.table[res.table.metric == "accepted"]
    assert sorted(set(share.gen)) == [1, 2, 3] and ((0 < share.value) & (share.value <= 1)).all()
    assert np.isnan(res.headline().set_index("metric").loc["accepted", "mad_ratio"])  # not a distance


# Self-correction.

def test_correction_at_strength_zero_changes_nothing(tmp_path):
    settings = dict(loop="fully_synthetic", n_real=20, n_synth=20, gens=3, runs=4, n_eval=30, n_ref=30, seed=1,
                    path="samples")
    plain = madloop.run(out=tmp_path / "a", **settings).table
    zero = madloop.run(out=tmp_path / "b", correct=0.0, **settings).table
    assert plain.drop(columns=["train_s", "eval_s"]).equals(zero.drop(columns=["train_s", "eval_s"]))


def test_langevin_correction_keeps_p_r_and_pulls_the_collapse_back():
    data = MixtureData()
    streams = Streams(0, range(200), 200)
    # MALA leaves p_r invariant: corrected real samples still follow p_r (their mean log-density does not move).
    real = data.sample(100, streams.at(0, Role.REAL))
    moved = remedies.correct(1.0, 5, data, real, streams.at(1, Role.CORRECT))
    d = data.log_prob(moved.x).mean(1) - data.log_prob(real.x).mean(1)
    assert abs(d.mean()) < 4 * d.std(ddof=1) / np.sqrt(len(d)) and not np.array_equal(moved.x, real.x)
    # The fully synthetic loop loses (n - 1) / n of tr Sigma per fit; a strong correction gives most of it back.
    n, gens, runs = 20, 10, 1000
    traces = {}
    for strength in (None, 3.0):
        cfg = madloop.resolve(dict(n_real=n, n_synth=n, gens=gens, runs=runs, seed=4, correct=strength, path="samples"))
        last = list(madloop.generations(cfg, build(cfg), range(runs)))[-1].model.cov
        traces[strength] = np.trace(last, axis1=1, axis2=2) / TRACE
    se = traces[None].std(ddof=1) / np.sqrt(runs)
    assert abs(traces[None].mean() - ((n - 1) / n) ** gens) < 4 * se
    assert traces[3.0].mean() > 0.85 and np.median(traces[3.0]) > 0.8 > 0.6 > np.median(traces[None])


@pytest.mark.parametrize("settings, message", [
    (dict(curate="best"), "curate must be one of: oracle, quantile; got 'best'"),
    (dict(curate="oracle", curate_strength=1.5), r"curate_strength of oracle curation must be in \[0, 1\], got 1.5"),
    (dict(curate="quantile", curate_strength=0.99), r"must be in \[0, 0.95\], got 0.99"),
    (dict(curate_strength=0.5), "curate_strength sets the strength of curation: it needs curate"),
    (dict(curate="oracle", model="ddpm"), "oracle curation needs the density of the model's samples; the 'ddpm' family"),
    (dict(correct=-1.0), "correct .* must be >= 0, got -1.0"),
    (dict(correct=float("inf")), "correct must be a finite number or none"),
    (dict(correct=1.0, correct_steps=0), "correct_steps must be a positive integer, got 0"),
    (dict(metrics=("w2", "accepted")), "metric 'accepted' is curation's accepted share: it needs curate"),
    (dict(curate="oracle", path="exact"), "path 'exact' needs .* no curation or correction"),
])
def test_bad_remedy_settings_are_one_line(settings, message):
    if settings.get("model", "gaussian") not in madloop.MODELS:
        pytest.skip(f"{settings['model']} is not registered")
    with pytest.raises(MadloopError, match=message):
        madloop.resolve(settings)


def test_remedies_that_need_p_r_refuse_a_data_source_without_it(tmp_path):
    points = tmp_path / "points.npy"
    np.save(points, np.random.default_rng(0).standard_normal((50, 2)))
    for remedy, what in ((dict(curate="quantile"), "density of p_r"), (dict(correct=1.0), "needs its gradient")):
        with pytest.raises(MadloopError, match=f"{what}; data source 'file' does not know it .use one of: gaussian, mixture"):
            madloop.resolve(dict(data="file", file=str(points), **remedy))


def test_exact_path_stays_where_remedies_change_nothing():
    assert madloop.resolve(dict(correct=0.0)).path == "exact"
    assert madloop.resolve(dict(curate="oracle", curate_strength=0.0)).path == "exact"
    assert madloop.resolve(dict(correct=0.5)).path == "samples"
    assert madloop.resolve(dict(loop="fresh", real_weight=0.3)).path == "exact"


# The study's table.

def test_the_study_table_bolds_the_best_ratio_of_each_loop():
    from madloop.studies import remedies as study

    assert study.golden_weight(100, 100) == pytest.approx(0.618, abs=1e-3)
    rows = []
    for arm, remedy, ratios in (("none", "none", (2.0, 1.5, 1.2)), ("real weight w = 0.618 (w*)", "real weight", (None, 1.4, 1.1)),
                                ("correct τ = 1", "correct", (1.1, 1.6, 1.3))):
        for loop, r in zip(study.LOOPS, ratios):
            if r is not None:
                rows.append(dict(family="gaussian", loop=loop, arm=arm, remedy=remedy, n_real=10, n_synth=10, metric="true_w2",
                                 gen=5, n=20, mean=r / 10, ci_low=r / 10 - 0.01, ci_high=r / 10 + 0.01,
                                 mad_ratio=r, mad_ratio_low=r - 0.1, mad_ratio_high=r + 0.1, diff=r - 1,
                                 diff_low=r - 1.1, diff_high=r - 0.9, accepted=np.nan, extra_draws=0.0,
                                 evaluations_per_sample=6))
    lines = study.markdown(pd.DataFrame(rows), "gaussian", floor=0.05).splitlines()
    ratio = lines[lines.index("| remedy | fully synthetic loop | synthetic augmentation loop | fresh data loop |") + 2:][:3]
    assert ratio == ["| none | 2 [1.9, 2.1] | 1.5 [1.4, 1.6] | 1.2 [1.1, 1.3] |",
                     "| real weight w = 0.618 (w*) | — (no real data to weigh) | **1.4 [1.3, 1.5]** | **1.1 [1, 1.2]** |",
                     "| correct τ = 1 | **1.1 [1, 1.2]** | 1.6 [1.5, 1.7] | 1.3 [1.2, 1.4] |"]
    # The distance itself, beside the real-data floor: absolute numbers next to the ratios.
    at = lines.index("E[d_T] (95% CI); the real-data floor (generation 0: real against real) is 0.05:")
    assert lines[at + 4] == "| none | 0.2 [0.19, 0.21] | 0.15 [0.14, 0.16] | 0.12 [0.11, 0.13] |"


def test_the_study_keeps_a_cell_that_cannot_run_with_its_reason():
    from madloop.studies import remedies as study

    if "ddpm" not in madloop.MODELS:
        pytest.skip("ddpm is not registered")
    assert study.absent("curate oracle", "fresh", "ddpm") == "n/a: no density"
    assert study.absent("curate oracle", "fresh", "gaussian") is None and study.absent("correct", "fresh", "ddpm") is None
    assert study.absent("real weight", "fully_synthetic", "ddpm") == "— (no real data to weigh)"
    ran = dict(metric="w2", gen=3, n=8, mean=0.3, ci_low=0.2, ci_high=0.4, mad_ratio=1.5, mad_ratio_low=1.4, mad_ratio_high=1.6, diff=0.0, diff_low=0.0,
               diff_high=0.0, accepted=np.nan, extra_draws=0.0, evaluations_per_sample=0, note="")
    tag = dict(family="ddpm", loop="fresh", n_real=10, n_synth=10)
    final = pd.DataFrame([{**tag, "arm": "none", "remedy": "none", **ran},
                          {**tag, "arm": "curate oracle s = 1", "remedy": "curate oracle", "metric": "w2",
                           "note": "n/a: no density"}]).astype({"n": "Int64", "gen": "Int64"})
    text = study.markdown(final, "ddpm")
    assert text.count("| curate oracle s = 1 | n/a: no density |") == 4  # ratio, distance, difference and cost tables
    assert "| none | **1.5 [1.4, 1.6]** |" in text


def test_the_study_runs_guidance_on_diffusion_families_and_says_why_elsewhere():
    from madloop.studies import remedies as study

    labels = [(a["arm"], a["settings"]) for a in study.arms(dict(study.STRENGTHS, guidance=(0.5,)), 100, 100)]
    assert ("SIMS ω = 0.5", dict(algo="sims", omega=0.5)) in labels
    assert ("autoguidance ω = 0.5", dict(algo="autoguidance", omega=0.5)) in labels
    assert study.absent("sims", "fresh", "gaussian") == "n/a: not a diffusion model"
    assert study.absent("autoguidance", "fresh", "gmm") == "n/a: not a diffusion model"
    assert study.absent("sims", "fresh", "ddpm") is None and study.absent("sims", "augmentation", "digits") is None
    # The image family: no sample weights, no log p_r for curation or correction; accumulate runs.
    assert study.absent("real weight", "augmentation", "digits") == "n/a: no sample weights"
    for remedy in ("curate oracle", "curate quantile", "correct"):
        assert study.absent(remedy, "fresh", "digits") == "n/a: no log p_r"
    assert study.absent("accumulate", "fresh", "digits") is None
    assert len(set(study.COLORS)) == len(study.COLORS) >= len(labels)  # every arm its own color in the figures
    assert study.cell(1.5, np.nan, np.nan) == "1.5 (no CI)" and study.cell(1.5, 1.4, 1.6, True) == "**1.5 [1.4, 1.6]**"
