"""SIMS: the guided model is exactly the stated combination; omega = 0 is the base, omega = -1 the auxiliary."""

from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from madloop.models.diffusion import DDPM, EDM, GuidedModel
from madloop.models.gaussian import Gaussian
from madloop.registry import ALGOS
from madloop.rng import RunRNG
from madloop.samples import Samples
from madloop.sims import SIMS

R, N, D = 2, 32, 2
TINY = dict(width=8, depth=2, epochs=2, batch=16)
FAMILIES = [DDPM(**TINY, steps=12), EDM(**TINY, steps=5)]
SIMS_TINY = dict(n_aux=24, aux_epochs=2)


def rng(role: str) -> RunRNG:
    return RunRNG(3, range(R), 1, role)


def data() -> Samples:
    return Samples(rng("data").standard_normal(N, D) * [1.0, 2.0])


@pytest.fixture(scope="module", params=FAMILIES, ids=["ddpm", "edm"])
def pair(request):
    spec = request.param
    base = spec.fit(data(), rng("fit"))
    return spec, base, spec.finetune(base, data(), rng("tune"), epochs=3)


def test_registered_and_built_from_json_options():
    assert ALGOS["sims"] is SIMS
    algo = ALGOS["sims"](**{"omega": 2.5, "n_aux": 100, "interval": [0.25, 1.0]})
    assert algo.interval == (0.25, 1.0) and algo == SIMS(omega=2.5, n_aux=100, interval=(0.25, 1.0))
    assert SIMS() == SIMS(omega=1.0, n_aux=2000, aux_epochs=50, interval=(0.0, 1.0), warm_start=False)


@pytest.mark.parametrize(
    "options", [{"omega": float("nan")}, {"n_aux": 0}, {"aux_epochs": -1}, {"interval": (0.5, 0.5)}, {"interval": (0.0, 1.5)}]
)
def test_bad_options_raise(options):
    with pytest.raises(ValueError):
        SIMS(**options)


@pytest.mark.parametrize("omega", [0.0, 0.7, 3.0, -1.0])
def test_guided_prediction_is_the_linear_combination(pair, omega):
    spec, base, aux = pair
    guided = spec.guided(base, aux, omega)
    x = torch.as_tensor(rng("x").standard_normal(7, D), dtype=torch.float32)
    level = torch.tensor(2.0 if isinstance(spec, DDPM) else 0.8)
    b, a = base.predict(x, level, 0), aux.predict(x, level, 0)
    torch.testing.assert_close(guided.predict(x, level, 0), (1 + omega) * b - omega * a)
    assert not torch.allclose(a, b)


def test_omega_zero_samples_exactly_as_the_base(pair):
    spec, base, aux = pair
    s = spec.guided(base, aux, 0.0).sample(40, rng("synth"))
    assert np.array_equal(s.x, base.sample(40, rng("synth")).x)
    assert not np.array_equal(s.x, spec.guided(base, aux, 0.5).sample(40, rng("synth")).x)


def test_omega_minus_one_samples_exactly_as_the_aux(pair):
    spec, base, aux = pair
    assert np.array_equal(spec.guided(base, aux, -1.0).sample(40, rng("synth")).x, aux.sample(40, rng("synth")).x)


@dataclass(frozen=True)
class Recorder:
    """An auxiliary model that records the sampler steps at which it is asked."""

    model: object
    steps: list

    def predict(self, x, level, step):
        self.steps.append(step)
        return self.model.predict(x, level, step)


@pytest.mark.parametrize("interval", [(0.0, 1.0), (0.5, 1.0), (0.0, 0.3)])
def test_guidance_only_on_the_interval_of_steps(pair, interval):
    spec, base, aux = pair
    steps = []
    GuidedModel(base, Recorder(aux, steps), 1.0, interval).sample(5, rng("synth"))
    n = spec.sampler_steps
    expected = [i for i in range(n) if interval[0] <= i / n < interval[1]]
    # Heun evaluates twice per step except the last (sigma_next = 0); ancestral DDPM once.
    if isinstance(spec, EDM):
        expected = [i for i in expected for _ in range(1 if i == n - 1 else 2)]
    assert steps == expected


def test_guided_rejects_mismatched_models(pair):
    spec, base, aux = pair
    with pytest.raises(ValueError):
        spec.guided(base, replace(aux, shift=aux.shift + 1), 1.0)
    with pytest.raises(ValueError):
        spec.guided(base, aux, 1.0, interval=(0.8, 0.2))


@pytest.mark.parametrize("spec", FAMILIES, ids=["ddpm", "edm"])
def test_sims_train_builds_base_as_standard_training_and_aux_from_its_samples(spec):
    algo = SIMS(omega=1.5, **SIMS_TINY)
    model = algo.train(spec, data(), rng("train"), None)
    standard = spec.fit(data(), rng("train").child("fit"))
    assert isinstance(model, GuidedModel) and model.omega == 1.5
    assert all(torch.equal(a, b) for a, b in zip(model.base.params, standard.params))
    s = standard.sample(SIMS_TINY["n_aux"], rng("train").child("aux-samples"))
    aux = spec.finetune(standard, s, rng("train").child("aux-fit"), SIMS_TINY["aux_epochs"])
    assert all(torch.equal(a, b) for a, b in zip(model.aux.params, aux.params))
    assert model.sample(10, rng("synth")).x.shape == (R, 10, D)


def test_omega_zero_skips_the_auxiliary_model_and_samples_as_the_base():
    spec = FAMILIES[0]
    model = SIMS(omega=0.0, **SIMS_TINY).train(spec, data(), rng("train"), None)
    standard = spec.fit(data(), rng("train").child("fit"))
    assert model.aux is model.base  # no samples S, no fine-tuning
    assert np.array_equal(model.sample(30, rng("synth")).x, standard.sample(30, rng("synth")).x)


def test_warm_start_continues_from_the_previous_base():
    spec = FAMILIES[0]
    previous = SIMS(**SIMS_TINY).train(spec, data(), rng("gen1"), None)
    warm = SIMS(warm_start=True, **SIMS_TINY).train(spec, data(), rng("gen2"), previous)
    cold = SIMS(**SIMS_TINY).train(spec, data(), rng("gen2"), previous)
    expected = spec.finetune(previous.base, data(), rng("gen2").child("fit"), spec.epochs)
    assert all(torch.equal(a, b) for a, b in zip(warm.base.params, expected.params))
    assert not torch.equal(warm.base.params[0], cold.base.params[0])
    first = SIMS(warm_start=True, **SIMS_TINY).train(spec, data(), rng("gen1"), None)
    assert all(torch.equal(a, b) for a, b in zip(first.base.params, previous.base.params))


def test_sims_needs_a_family_that_fine_tunes():
    with pytest.raises(ValueError, match="fine-tune"):
        SIMS().train(Gaussian(), data(), rng("train"), None)
