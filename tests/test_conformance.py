"""The contract every registered model family keeps (as scikit-learn's check_estimator does for estimators).

Each check runs on every name in ``MODELS``: a new family gets them by registering. ``TINY`` holds small
options for families whose defaults take long to train; ``KNOWN_GAPS`` the checks a family does not pass yet.
"""

import dataclasses
import inspect
import pickle

import numpy as np
import pytest
from joblib import Parallel, delayed

import madloop  # noqa: F401  (registers the built-in families)
from madloop.errors import MadloopError
from madloop.models.base import CAPABILITIES
from madloop.registry import MODELS
from madloop.rng import RunRNG
from madloop.samples import Samples

TINY = {
    "ddpm": dict(width=8, depth=2, epochs=3, batch=16, steps=10),
    "edm": dict(width=8, depth=2, epochs=3, batch=16, steps=6),
    "flow": dict(layers=2, width=8, depth=1, epochs=3, batch=16),
    "gan": dict(latent=2, width=8, depth=1, epochs=3, batch=16),
    "gmm": dict(k=2),
    "unet": dict(channels=8, batch=16, images=320, warmup=64, ema=64, steps=6),
}
IMAGES = {"unet"}  # families of images (C, H, W): fitted to 8x8 digits with labels
KNOWN_GAPS: dict = {}
FAMILIES = MODELS.names()
R, N, D = 3, 40, 2


def spec(name: str):
    return MODELS[name](**TINY.get(name, {}))


def rng(role: str, runs: range = range(R)) -> RunRNG:
    return RunRNG(11, runs, 1, role, total=R)


def data(name: str = "gaussian") -> Samples:
    """Each run's N points from its own Gaussian, or (image families) N labelled 8x8 digits of its own."""
    if name in IMAGES:
        return madloop.DATA["digits"]().sample(N, rng("data"))
    x = rng("data").standard_normal(N, D) * [1.0, 2.0] + [0.5, -1.0]
    return Samples(x * np.arange(1, R + 1)[:, None, None])


def item_shape(name: str) -> tuple[int, ...]:
    return (1, 8, 8) if name in IMAGES else (D,)


def fit_and_sample(spec, runs: range = range(R), n: int = 20) -> np.ndarray:
    name = next(k for k in FAMILIES if isinstance(spec, MODELS[k]))
    model = spec.fit(data(name).runs(list(runs)), rng("fit", runs))
    return model.sample(n, rng("synth", runs)).x


def known_gap(request, name: str, check: str) -> None:
    if (name, check) in KNOWN_GAPS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_GAPS[name, check], strict=True))


@pytest.fixture(scope="module")
def fitted():
    return {name: spec(name).fit(data(name), rng("fit")) for name in FAMILIES}


@pytest.fixture(scope="module")
def from_workers():
    """Every family fitted and sampled in worker processes (loky, as ``--jobs`` runs chunks)."""
    samples = Parallel(n_jobs=2)(delayed(fit_and_sample)(spec(name)) for name in FAMILIES)
    return dict(zip(FAMILIES, samples))


@pytest.mark.parametrize("name", FAMILIES)
def test_fit_and_sample_shapes(name, fitted):
    s = fitted[name].sample(25, rng("synth"))
    dtype = np.float32 if name in IMAGES else np.float64  # images are stored as float32 in [0, 1]
    assert isinstance(s, Samples) and s.x.shape == (R, 25, *item_shape(name)) and s.x.dtype == dtype
    assert np.isfinite(s.x).all()
    assert not np.array_equal(s.x[0], s.x[1])  # every run has its own model and draws


@pytest.mark.parametrize("name", FAMILIES)
def test_lam_1_is_the_default_and_samples_the_fitted_distribution(name, fitted):
    model = fitted[name]
    np.testing.assert_array_equal(model.sample(50, rng("synth")).x, model.sample(50, rng("synth"), 1.0).x)
    full, narrow = model.sample(400, rng("synth")).x, model.sample(400, rng("synth"), 0.3).x
    if name in IMAGES:  # lam acts through guidance on a class-conditional model: tests/test_unet.py checks it
        assert not np.array_equal(full, narrow)
        return
    assert (narrow.var(1) < full.var(1)).all()  # SPEC section 2: lam < 1 trades diversity away
    if hasattr(model, "moments"):  # where the model states its distribution, lam = 1 draws from it
        mean, cov = model.moments()
        x = model.sample(20_000, rng("many")).x
        sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
        assert (np.abs(x.mean(1) - mean) < 5 * sd / np.sqrt(x.shape[1])).all()
        # A sample covariance entry's standard error is about sd_i sd_j sqrt(2 / n); mixtures have heavier tails.
        xc = x - x.mean(1, keepdims=True)
        s = np.einsum("rni,rnj->rij", xc, xc) / x.shape[1]
        assert (np.abs(s - cov) < 8 * sd[:, :, None] * sd[:, None, :] * np.sqrt(2 / x.shape[1])).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_same_result_and_other_streams_differ(name, fitted):
    again = spec(name).fit(data(name), rng("fit"))
    np.testing.assert_array_equal(again.sample(20, rng("synth")).x, fitted[name].sample(20, rng("synth")).x)
    assert not np.array_equal(fitted[name].sample(20, rng("synth")).x, fitted[name].sample(20, rng("other")).x)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_run_does_not_depend_on_the_other_runs_of_its_chunk(name):
    together = fit_and_sample(spec(name))
    alone = fit_and_sample(spec(name), range(1, 2))  # run 1 as a chunk of its own, as a worker gets it
    np.testing.assert_allclose(alone, together[1:2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_pickles_and_fits_identically_in_a_worker(name, fitted, from_workers):
    assert pickle.loads(pickle.dumps(spec(name))) == spec(name)
    copy = pickle.loads(pickle.dumps(fitted[name]))
    np.testing.assert_array_equal(copy.sample(20, rng("synth")).x, fitted[name].sample(20, rng("synth")).x)
    np.testing.assert_array_equal(from_workers[name], fit_and_sample(spec(name)))


@pytest.mark.parametrize("name", FAMILIES)
def test_fit_rejects_items_it_does_not_model(name, request):
    known_gap(request, name, "items")
    wrong = Samples(rng("data").standard_normal(N, D)) if name in IMAGES else Samples(rng("data").standard_normal(N, 1, 4, 4))
    with pytest.raises(MadloopError, match="shape"):
        spec(name).fit(wrong, rng("fit"))


@pytest.mark.parametrize("name", FAMILIES)
def test_sample_rejects_a_bias_outside_0_1_and_a_stream_of_other_runs(name, fitted, request):
    known_gap(request, name, "lam")
    for lam in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(MadloopError, match="lam"):
            fitted[name].sample(5, rng("synth"), lam)
    with pytest.raises(MadloopError, match="runs"):  # a one-run stream would broadcast one run's draws to all
        fitted[name].sample(5, rng("synth", range(1)))


@pytest.mark.parametrize("name", FAMILIES)
def test_a_family_provides_the_capabilities_it_declares(name, fitted):
    """What the algorithms and remedies ask of a family (models.base.can) is what it declares, and it holds."""
    s, model, caps = spec(name), fitted[name], MODELS[name].capabilities
    assert set(caps) <= set(CAPABILITIES), f"{name} declares unknown capabilities {set(caps) - set(CAPABILITIES)}"
    options = {f.name for f in dataclasses.fields(s)}
    assert ("finetune" in caps) == callable(getattr(s, "finetune", None))
    assert ("guided" in caps) == callable(getattr(s, "guided", None))
    if "finetune" in caps:
        assert s.budget_unit in options
        tuned = s.finetune(model, data(name), rng("tune"), 1 if s.budget_unit == "epochs" else s.batch)
        assert tuned.sample(5, rng("synth")).x.shape == (R, 5, *item_shape(name))
    if "guided" in caps:
        assert s.guided(model, model, 0.5).sample(5, rng("synth")).x.shape == (R, 5, *item_shape(name))
    if "width" in caps:
        assert s.width_option in options
    assert ("decoder_only" in caps) == ("decoder_only" in inspect.signature(getattr(s, "finetune", len)).parameters)
    if "density" in caps:
        assert model.log_prob(data(name).x, 1.0).shape == (R, N)
    if "weighted" in caps:  # unequal weights: a weighted objective
        x = data(name).x
        weighted = Samples.concat([Samples(x[:, : N // 2]).weighted(0.3), Samples(x[:, N // 2 :]).weighted(0.7)])
        assert s.fit(weighted, rng("fit")).sample(5, rng("synth")).x.shape == (R, 5, *item_shape(name))
