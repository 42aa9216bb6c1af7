"""The diffusion families and their batched ensembles: tiny networks, a few epochs, exact where promised."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from madloop.models.diffusion import DDPM, EDM, cosine_alpha_bar, ddpm_sampler, edm_denoiser, karras_sigmas
from madloop.models import ensemble
from madloop.models.ensemble import init_mlp, mlp, train
from madloop.registry import MODELS
from madloop.rng import RunRNG
from madloop.samples import Samples

R, N, D = 3, 40, 2
TINY = dict(width=8, depth=2, epochs=3, batch=16)
FAMILIES = [DDPM(**TINY), EDM(**TINY, steps=6)]


def rng(role: str, runs: int = R) -> RunRNG:
    return RunRNG(7, range(runs), 1, role)


def data(runs: int = R, n: int = N) -> Samples:
    return Samples(rng("data", runs).standard_normal(n, D) * [1.0, 2.0] + [0.5, -1.0])


@pytest.fixture(scope="module", params=FAMILIES, ids=["ddpm", "edm"])
def fitted(request):
    spec = request.param
    return spec, spec.fit(data(), rng("fit"))


def test_registered_and_built_from_options():
    assert MODELS["ddpm"] is DDPM and MODELS["edm"] is EDM
    spec = MODELS["ddpm"](**{"width": 8, "standardize": True, "time_embedding": "sinusoidal", "steps": 10})
    assert spec == DDPM(width=8, standardize=True, time_embedding="sinusoidal", steps=10)
    assert DDPM() == DDPM(width=64, depth=4, epochs=100, batch=128, lr=1e-3, steps=40)


@pytest.mark.parametrize(
    "options",
    [{"width": 0}, {"epochs": 0}, {"lr": 0.0}, {"time_embedding": "fourier"}, {"device": "tpu"}, {"dtype": "float16"}, {"steps": 1}],
)
def test_bad_options_raise(options):
    for family in (DDPM, EDM):
        with pytest.raises(ValueError):
            family(**options)


def test_edm_bad_noise_levels_raise():
    with pytest.raises(ValueError):
        EDM(sigma_min=1.0, sigma_max=0.5)


def test_shapes_and_dtype(fitted):
    spec, model = fitted
    s = model.sample(25, rng("synth"))
    assert s.x.shape == (R, 25, D) and s.x.dtype == np.float64 and np.isfinite(s.x).all()
    assert all(p.shape[0] == R for p in model.params)


def test_same_rng_gives_identical_models_and_samples(fitted):
    spec, model = fitted
    again = spec.fit(data(), rng("fit"))
    assert all(torch.equal(a, b) for a, b in zip(model.params, again.params))
    assert np.array_equal(model.sample(20, rng("synth")).x, again.sample(20, rng("synth")).x)
    assert not np.array_equal(model.sample(20, rng("synth")).x, model.sample(20, rng("other")).x)


@pytest.mark.parametrize("rows", [ensemble.PASS_ROWS, 20], ids=["one-block", "block-per-run"])
@pytest.mark.parametrize("spec", [*FAMILIES, DDPM(**TINY, standardize=True, time_embedding="sinusoidal")])
def test_ensemble_run_equals_that_run_trained_alone(spec, rows, monkeypatch):
    monkeypatch.setattr(ensemble, "PASS_ROWS", rows)
    together = spec.fit(data(), rng("fit"))
    s_together = together.sample(30, rng("synth")).x
    for r in range(R):
        alone = spec.fit(data().runs([r]), rng("fit").subset([r]))
        for a, b in zip(together.params, alone.params):
            torch.testing.assert_close(a[r : r + 1], b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s_together[r : r + 1], alone.sample(30, rng("synth").subset([r])).x, rtol=1e-4, atol=1e-5)
    assert not torch.equal(together.params[0][0], together.params[0][1])


@pytest.mark.parametrize("threads, rows", [(2, ensemble.PASS_ROWS), (2, 16), (1, 16)])
def test_training_is_identical_for_any_thread_count_and_block_size(threads, rows, monkeypatch):
    def fit(threads: int):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return DDPM(**TINY).fit(data(), rng("fit"))
        finally:
            torch.set_num_threads(before)

    one = fit(1)  # one thread, one block of all runs
    monkeypatch.setattr(ensemble, "PASS_ROWS", rows)  # 16 rows: a block per run, shared among the threads
    assert all(torch.equal(a, b) for a, b in zip(one.params, fit(threads).params))


def test_fit_and_samples_are_identical_for_any_thread_count():
    def fit_and_sample(threads: int):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            model = DDPM(**TINY).fit(data(), rng("fit"))
            return model, model.sample(30, rng("synth")).x
        finally:
            torch.set_num_threads(before)

    (one, s_one), (two, s_two) = fit_and_sample(1), fit_and_sample(2)
    assert all(torch.equal(a, b) for a, b in zip(one.params, two.params))
    assert np.array_equal(s_one, s_two)


# Sample weights (real-data weighting).


def test_relative_weights():
    w = np.array([[1.0, 3.0, 0.0, 4.0], [0.2, 0.2, 0.2, 0.2]])
    v = ensemble.relative_weights(w)
    np.testing.assert_allclose(v[0], [0.5, 1.5, 0.0, 2.0])
    assert (v[1] == 1.0).all()  # equal weights: exactly 1, the unweighted loss
    assert ensemble.relative_weights(None) is None and ensemble.relative_weights(w[[1, 1]]) is None
    with pytest.raises(ValueError, match="positive total weight"):
        ensemble.relative_weights(np.array([[1.0, 2.0], [0.0, 0.0]]))


@pytest.mark.parametrize("spec", FAMILIES, ids=["ddpm", "edm"])
def test_equal_weights_give_the_unweighted_numbers(spec):
    plain, equal = spec.fit(data(), rng("fit")), spec.fit(data().weighted(0.3), rng("fit"))
    assert all(torch.equal(a, b) for a, b in zip(plain.params, equal.params))
    assert np.array_equal(plain.sample(20, rng("synth")).x, equal.sample(20, rng("synth")).x)
    tuned, tuned_equal = (spec.finetune(plain, d, rng("tune"), epochs=2) for d in (data(), data().weighted(0.7)))
    assert all(torch.equal(a, b) for a, b in zip(tuned.params, tuned_equal.params))
    # A run with equal weights among weighted runs trains as it would unweighted.
    w = rng("w").random(N) + 0.1
    w[0] = 1.0
    mixed = spec.fit(Samples(data().x, w=w), rng("fit"))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(plain.params, mixed.params))
    assert not torch.equal(plain.params[0][1], mixed.params[0][1])


@pytest.mark.parametrize("family", [DDPM, EDM])
def test_weights_move_the_fit_toward_the_heavy_points(family):
    # Two clusters at x_1 = -2 and +2; all weight on the right one: the samples go there, unweighted they split.
    spec = family(width=32, depth=2, epochs=30, batch=16, lr=3e-3, steps=10, standardize=True, time_embedding="sinusoidal")
    right = np.arange(N) % 2 == 0
    x = Samples(rng("data").standard_normal(N, D) * 0.3 + np.where(right[:, None], [2.0, 0.0], [-2.0, 0.0]))
    w = np.broadcast_to(right.astype(float), (R, N)).copy()
    share = {}
    for name, d in (("plain", x), ("weighted", Samples(x.x, w=w))):
        share[name] = (spec.fit(d, rng("fit")).sample(400, rng("synth")).x[..., 0] > 0).mean(1)
    assert (share["weighted"] > 0.85).all() and (share["plain"] < 0.75).all(), share


def test_mlp_matches_torch_nn_layer_list():
    sizes = [3, 8, 8, 8, 2]
    params = init_mlp(sizes, rng("init"), torch.device("cpu"))
    h = torch.as_tensor(rng("h").standard_normal(5, 3), dtype=torch.float32)
    for r in range(R):
        lin = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        for l, layer in enumerate(lin):
            layer.weight.data, layer.bias.data = params[2 * l][r].T, params[2 * l + 1][r, 0]
        net = torch.nn.Sequential(lin[0], lin[1], torch.nn.ReLU(), lin[2], torch.nn.ReLU(), lin[3])
        torch.testing.assert_close(mlp(params, h)[r], net(h[r]))
    bound = 1 / np.sqrt(np.array(sizes[:-1]))
    assert all(np.abs(params[2 * l].numpy()).max() <= bound[l] for l in range(4))


def test_ensemble_training_matches_plain_torch_adam():
    sizes, n, batch, epochs = [2, 8, 8, 2], 12, 5, 2
    x = rng("x").standard_normal(n, 2)
    params = init_mlp(sizes, rng("init"), torch.device("cpu"))
    draw = lambda g, n, d: (g.standard_normal(n, d),)  # noqa: E731
    loss = lambda net, x0, z: ((net(x0 + z) - x0) ** 2).mean((1, 2))  # noqa: E731
    trained = train(params, loss, x, draw, rng("train"), epochs, batch, 1e-3)
    # The same run by hand: torch.nn layers, torch.optim.Adam, the same draws in the same order.
    r, g = 1, rng("train")
    lin = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    for l, layer in enumerate(lin):
        layer.weight.data, layer.bias.data = params[2 * l][r].T.clone(), params[2 * l + 1][r, 0].clone()
    net = torch.nn.Sequential(lin[0], lin[1], torch.nn.ReLU(), lin[2])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = g.permutations(n)[r]
        x0, z = (torch.as_tensor(a, dtype=torch.float32) for a in (x[r, order], g.standard_normal(n, 2)[r]))
        for i in range(0, n, batch):
            opt.zero_grad()
            ((net(x0[i : i + batch] + z[i : i + batch]) - x0[i : i + batch]) ** 2).mean().backward()
            opt.step()
    for l, layer in enumerate(lin):
        torch.testing.assert_close(trained[2 * l][r], layer.weight.data.T, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(trained[2 * l + 1][r, 0], layer.bias.data, rtol=1e-5, atol=1e-6)


def test_training_pass_gradients_equal_autograd():
    sizes, k, m = [3, 16, 16, 16, 2], 4, 10
    params = init_mlp(sizes, rng("init", k), torch.device("cpu"))
    h = torch.as_tensor(rng("h", k).standard_normal(m, 3), dtype=torch.float32)
    y = torch.as_tensor(rng("y", k).standard_normal(m, 2), dtype=torch.float32)
    loss = lambda out: ((out - y) ** 2).mean((1, 2)).sum()  # noqa: E731
    leaves = [p.clone().requires_grad_() for p in params]
    loss(mlp(leaves, h)).backward()
    grads = tuple(torch.full_like(p, float("nan")) for p in params)
    # The pass's buffers are made for more runs and rows than it gets: it must use views of their first part.
    pass_ = ensemble.TrainingPass(params, grads, k + 3, m + 5)
    out = pass_.net(slice(0, k))(h)
    pass_.backward(torch.autograd.grad(loss(out), pass_.out)[0])
    for leaf, grad in zip(leaves, grads):
        torch.testing.assert_close(grad, leaf.grad, rtol=1e-6, atol=1e-7)
    assert all(not p.requires_grad for p in params)


def test_finetune_leaves_the_original_unchanged(fitted):
    spec, model = fitted
    before = [p.clone() for p in model.params]
    tuned = spec.finetune(model, data(), rng("tune"), epochs=2)
    assert all(torch.equal(a, b) for a, b in zip(model.params, before))
    assert not all(torch.equal(a, b) for a, b in zip(model.params, tuned.params))
    assert tuned.spec == spec and tuned.shift is model.shift and tuned.scale is model.scale


@pytest.mark.parametrize("lam", [0.5, 0.1])
def test_lam_scales_all_sampler_noise_by_its_square_root(fitted, lam):
    spec, model = fitted
    # With a zero network every sampler is linear in its noises, so the output scales by sqrt(lam) exactly.
    zero = replace(model, params=tuple(torch.zeros_like(p) for p in model.params))
    full, biased = zero.sample(50, rng("synth")).x, zero.sample(50, rng("synth"), lam=lam).x
    np.testing.assert_allclose(biased, np.sqrt(lam) * full, rtol=1e-5, atol=1e-4)
    assert np.abs(full).max() > 0.1
    with pytest.raises(ValueError):
        model.sample(5, rng("synth"), lam=1.5)


def test_lam_narrows_trained_model_samples(fitted):
    spec, model = fitted
    full, biased = model.sample(400, rng("synth")).x, model.sample(400, rng("synth"), lam=0.3).x
    assert (biased.var(1) < full.var(1)).all()


def test_standardize_maps_samples_back_to_data_space():
    spec = DDPM(**TINY, standardize=True)
    x = data()
    model = spec.fit(x, rng("fit"))
    np.testing.assert_allclose(model.shift[:, 0], x.x.mean(1))
    np.testing.assert_allclose(model.scale[:, 0], x.x.std(1))
    zero = replace(model, params=tuple(torch.zeros_like(p) for p in model.params))
    unit = replace(zero, shift=np.zeros_like(model.shift), scale=np.ones_like(model.scale))
    np.testing.assert_allclose(zero.sample(10, rng("s")).x, unit.sample(10, rng("s")).x * model.scale + model.shift)


def test_bfloat16_runs_and_differs_from_float32(fitted):
    spec, model = fitted
    half = replace(spec, dtype="bfloat16")
    m16 = half.fit(data(), rng("fit"))
    s16, s32 = m16.sample(20, rng("synth")).x, model.sample(20, rng("synth")).x
    assert np.isfinite(s16).all() and all(p.dtype == torch.float32 for p in m16.params)
    assert not np.array_equal(s16, s32)


def test_runs_of_rng_and_data_must_agree(fitted):
    spec, model = fitted
    with pytest.raises(ValueError):
        spec.fit(data(), rng("fit", runs=2))
    with pytest.raises(ValueError):
        model.sample(5, rng("synth", runs=2))


def test_cosine_schedule_and_karras_levels():
    alpha_bar = cosine_alpha_bar(40)
    beta = 1 - alpha_bar[1:] / alpha_bar[:-1]
    assert alpha_bar.shape == (40,) and alpha_bar[0] == 1.0 and (beta > 0).all() and (beta <= 0.999).all()
    f = lambda t: np.cos((t / 40 + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    np.testing.assert_allclose(alpha_bar[39], f(39) / f(0))
    sigmas = karras_sigmas(18, 0.002, 80.0, 7.0)
    np.testing.assert_allclose(sigmas[[0, 17, 18]], [80.0, 0.002, 0.0])
    assert (np.diff(sigmas) < 0).all()


def test_ancestral_step_and_edm_preconditioning_match_the_papers():
    # DDPM: x_(t-1) = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t) + sqrt(beta_t) z, no z at t = 1.
    alpha_bar, x, z, eps = cosine_alpha_bar(3), torch.ones(1, 1, 2), torch.full((1, 1, 2), 0.5), 0.3
    expected = x.clone()
    for t in (2, 1):
        beta = 1 - alpha_bar[t] / alpha_bar[t - 1]
        expected = (expected - beta / np.sqrt(1 - alpha_bar[t]) * eps) / np.sqrt(1 - beta) + (t > 1) * np.sqrt(beta) * z
    torch.testing.assert_close(ddpm_sampler(lambda x, t, i: eps + 0 * x, x, lambda: z, alpha_bar, 1.0), expected)
    # EDM: D = c_skip x + c_out F(c_in x, c_noise) with Karras et al.'s Table 1 coefficients.
    sigma, x = torch.tensor([[[0.5]], [[2.0]]]), torch.ones(2, 3, 2)
    D = edm_denoiser(lambda x_in, c_noise: x_in + c_noise, x, sigma, 0.5)
    c_in, c_skip, c_out = 1 / (sigma**2 + 0.25).sqrt(), 0.25 / (sigma**2 + 0.25), sigma * 0.5 / (sigma**2 + 0.25).sqrt()
    torch.testing.assert_close(D, c_skip * x + c_out * (c_in * x + sigma.log() / 4))
