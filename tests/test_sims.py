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


# The auxiliary budget in each family's unit, the real-data control and autoguidance (issue 16).


def test_the_auxiliary_budget_converts_between_epochs_and_images():
    from madloop.errors import MadloopError
    from madloop.models.unet import UNet
    from madloop.sims import aux_budget

    assert aux_budget(DDPM(), 100, 7, None) == 7  # epochs family, epochs given
    assert aux_budget(DDPM(), 100, 7, 300) == 3  # images given: B / n_aux epochs
    assert aux_budget(UNet(), 100, 7, None) == 700  # images family: aux_epochs x n_aux images
    assert aux_budget(UNet(), 100, 7, 300) == 300
    with pytest.raises(MadloopError, match="must be a multiple of n_aux"):
        aux_budget(DDPM(), 100, 7, 250)


def test_the_real_data_control_fine_tunes_on_n_aux_real_items_for_the_same_budget():
    spec = FAMILIES[0]
    real = Samples(rng("real").standard_normal(40, D))
    model = SIMS(omega=1.0, aux_data="real", **SIMS_TINY).train(spec, data(), rng("train"), None, real=real)
    base = spec.fit(data(), rng("train").child("fit"))
    chosen = real.take(rng("train").child("aux-samples").permutations(40, SIMS_TINY["n_aux"]))
    aux = spec.finetune(base, chosen, rng("train").child("aux-fit"), SIMS_TINY["aux_epochs"])
    assert all(torch.equal(a, b) for a, b in zip(model.aux.params, aux.params))
    synthetic = SIMS(omega=1.0, **SIMS_TINY).train(spec, data(), rng("train"), None, real=real)
    assert not torch.equal(synthetic.aux.params[0], model.aux.params[0])  # the set it fine-tunes on matters
    assert all(torch.equal(a, b) for a, b in zip(synthetic.base.params, model.base.params))  # the same base
    with pytest.raises(Exception, match="real data has 10"):
        SIMS(omega=1.0, aux_data="real", **SIMS_TINY).train(spec, data(), rng("train"), None, real=Samples(real.x[:, :10]))
    with pytest.raises(ValueError, match="aux_data must be one of synthetic, real"):
        SIMS(aux_data="fake")


def test_autoguidance_guides_with_a_shorter_trained_narrower_model_of_the_same_data():
    from madloop.sims import Autoguidance

    spec = FAMILIES[0]  # epochs=2: a quarter of it rounds down to 1 (at least 1)
    model = Autoguidance(omega=0.5).train(spec, data(), rng("train"), None)
    base = spec.fit(data(), rng("train").child("fit"))
    bad = replace(spec, epochs=1).fit(data(), rng("train").child("aux-fit"))
    assert all(torch.equal(a, b) for a, b in zip(model.base.params, base.params))
    assert all(torch.equal(a, b) for a, b in zip(model.aux.params, bad.params))
    narrow = Autoguidance(omega=0.5, aux_epochs=3, aux_width=0.5).train(spec, data(), rng("train"), None)
    assert narrow.aux.spec == replace(spec, epochs=3, width=4) and narrow.aux.params[0].shape[-1] == 4
    assert narrow.sample(7, rng("synth")).x.shape == (R, 7, D)
    plain = Autoguidance(omega=0.0).train(spec, data(), rng("train"), None)
    assert np.array_equal(plain.sample(9, rng("synth")).x, base.sample(9, rng("synth")).x)
    with pytest.raises(ValueError, match="aux_width"):
        Autoguidance(aux_width=1.5)


def test_guidance_combines_models_of_one_sampler_only():
    from madloop.models.base import same_sampler

    spec = FAMILIES[0]
    assert same_sampler(spec, replace(spec, epochs=9, width=3))  # budget and width may differ
    assert not same_sampler(spec, replace(spec, steps=13))  # other noise levels: not one sampler
    assert not same_sampler(spec, FAMILIES[1])


def test_curation_hits_the_requested_shares_exactly():
    from madloop.sims import curated_index

    groups = (rng("groups").random(300) < 0.5).astype(int)  # about half of each group
    for shares, n, zeros in (((0.3, 0.7), 100, 30), ((0.7, 0.3), 101, 71), ((1.0, 0.0), 50, 50)):
        index = curated_index(groups, shares, n, rng("curate"))
        assert index.shape == (R, n) and all(len(set(row)) == n for row in index)  # n distinct candidates
        picked = np.take_along_axis(groups, index, 1)
        assert (picked == 0).sum(1).tolist() == [zeros] * R  # exact counts (largest remainder: 70.7 -> 71)
    with pytest.raises(Exception, match="draw more candidates"):
        curated_index(groups, (1.0, 0.0), 250, rng("curate"))
    with pytest.raises(ValueError, match="sum to 1"):
        curated_index(groups, (0.5, 0.6), 10, rng("curate"))


def test_sims_curates_s_to_the_requested_class_shares_of_the_data_source(tmp_path):
    import madloop
    from madloop.data import MixtureData
    from madloop.sims import curated_samples

    source = MixtureData(means=((-3.0, 0.0), (3.0, 0.0)), std=0.5)
    x = np.array([[[-3.1, 0.2], [2.9, -0.1], [-0.1, 0.0]]])
    assert source.label(x).tolist() == [[0, 1, 0]] and source.classes == 2  # the most likely component
    spec = FAMILIES[0]
    base = spec.fit(source.sample(N, rng("real")), rng("fit"))
    s = curated_samples(base, source, (0.25, 0.75), 20, rng("aux"))
    assert s.x.shape == (R, 20, D) and (source.label(s.x) == 0).sum(1).tolist() == [5] * R
    tiny = dict(data="mixture", means=((-3.0, 0.0), (3.0, 0.0)), model="ddpm", runs=2, gens=2, n_real=N, n_synth=N,
                n_eval=N, n_ref=N, metrics=("sliced_w2",), algo="sims", n_aux=16, aux_epochs=1, width=8, depth=2,
                epochs=2, batch=16, steps=12)
    result = madloop.run(out=tmp_path / "r", **tiny, aux_proportions=(0.3, 0.7))  # a loop passes its source
    assert result.config.algo_options["aux_proportions"] == (0.3, 0.7) and len(result.table)
    with pytest.raises(madloop.MadloopError, match="data source 'gaussian' gives no classes"):
        madloop.resolve({**{k: v for k, v in tiny.items() if k != "means"}, "data": "gaussian",
                         "aux_proportions": (0.3, 0.7)})
    with pytest.raises(madloop.MadloopError, match="has 3 groups but data source 'mixture' has 2 classes"):
        madloop.resolve({**tiny, "aux_proportions": (0.2, 0.3, 0.5)})
    with pytest.raises(ValueError, match="summing to 1"):
        SIMS(aux_proportions=(0.5, 0.6))


def test_an_image_set_labels_images_by_its_feature_network():
    import madloop
    from madloop import features

    source = madloop.DATA["digits"]()
    x = source.reference(12, RunRNG(0, range(2), 0, "ref"))
    labels = source.label(x.x)
    assert labels.shape == (2, 12)
    assert labels[1].tolist() == features.network(source).classify(x.x[1]).tolist()
    assert (labels == x.y).mean() > 0.8  # the classifier is right on most real digits


def test_autoguidance_trains_its_bad_model_on_the_base_schedule_shrunk_to_its_budget():
    """Karras et al.'s bad model is the base's recipe run for less: a budget of an eighth of the base's gets an
    eighth of its warm-up and EMA half-life (not a budget spent inside the base's warm-up), half the width."""
    from madloop.models.unet import UNet
    from madloop.sims import Autoguidance

    spec = UNet(images=16384, warmup=2048, ema=2048.0, channels=16)
    bad = Autoguidance(aux_images=2048, aux_width=0.5).aux_spec(spec, 500)
    assert (bad.images, bad.channels, bad.warmup, bad.ema) == (2048, 8, 256, 256.0)
    kept = Autoguidance(aux_images=2048, aux_schedule="base").aux_spec(spec, 500)
    assert (kept.images, kept.channels, kept.warmup, kept.ema) == (2048, 16, 2048, 2048.0)
    assert Autoguidance(aux_images=32768).aux_spec(spec, 500).warmup == 2048  # a longer budget never stretches it
    with pytest.raises(ValueError, match="aux_schedule"):
        Autoguidance(aux_schedule="long")
