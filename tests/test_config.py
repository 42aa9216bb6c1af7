import json

import numpy as np
import pytest

import madloop
from madloop import data as data_module
from madloop import exact_path
from madloop.config import PRESETS, RunConfig, resolve, validate
from madloop.config.resolution import options_of
from madloop.runner import build


def test_json_and_toml_round_trip(tmp_path):
    cfg = resolve({"data": "mixture", "model": "gmm", "data.k": 4, "model.k": 4, "layout": "grid",
                   "weights": (0.1, 0.2, 0.3, 0.4), "loop": "augmentation", "accumulate": True, "budget": 50,
                   "lam": 0.7, "metrics": ("w2", "sliced_w2")})
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    assert resolve(config_file=path) == cfg
    path = tmp_path / "c.json"
    path.write_text(cfg.to_json())
    assert resolve(config_file=path) == cfg


def test_a_shared_option_name_must_be_qualified():
    with pytest.raises(madloop.MadloopError, match="option 'k' belongs to data and model; write data.k or model.k"):
        resolve(dict(data="mixture", model="gmm", k=4))


def test_flat_options_go_to_their_component_with_defaults_filled_in():
    cfg = resolve(dict(model="gmm", k=3, mean=(1, 2), cov=((1, 0), (0, 1))))
    assert cfg.model_options == {**options_of(madloop.MODELS["gmm"]()), "k": 3}
    assert cfg.data_options == {"mean": (1, 2), "cov": ((1, 0), (0, 1))}
    assert cfg.algo_options == {}


def test_precedence_defaults_preset_file_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('gens = 7\nruns = 3\n')
    cfg = resolve(dict(runs=5), preset="collapse", config_file=path)
    assert (cfg.n_synth, cfg.gens, cfg.runs) == (PRESETS["collapse"]["n_synth"], 7, 5)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_resolves(name):
    assert isinstance(resolve(preset=name), RunConfig)


def test_eval_generations():
    assert resolve(dict(gens=10, every=4)).eval_gens() == [1, 5, 9, 10]
    assert resolve(dict(gens=3)).eval_gens() == [1, 2, 3]


def test_api_keywords_are_the_config_names(tmp_path, tiny):
    result = madloop.run(out=tmp_path / "r", n_synth=12, lam=0.9, **{k: v for k, v in tiny.items() if k != "n_synth"})
    assert (result.config.n_synth, result.config.lam) == (12, 0.9)


def test_choosing_sims_implies_the_diffusion_model_at_a_laptop_size():
    cfg = resolve(dict(algo="sims", loop="augmentation", omega=3, gens=100))
    assert (cfg.model, cfg.runs, cfg.n_real, cfg.metrics) == ("ddpm", 8, 1000, ("gauss_w2", "sliced_w2"))
    assert cfg.algo_options["omega"] == 3.0
    # anything given wins over what the choice implies
    cfg = resolve(dict(algo="sims", runs=3, model="edm", metrics=("w2",)))
    assert (cfg.model, cfg.runs, cfg.metrics) == ("edm", 3, ("w2",))


def test_an_algorithm_refuses_a_model_family_that_lacks_what_it_needs():
    with pytest.raises(madloop.MadloopError, match="algorithm 'sims' needs a model family with finetune and guided; 'gaussian' has no finetune"):
        resolve(dict(algo="sims", model="gaussian"))


def test_the_exact_path_is_chosen_where_it_applies():
    assert resolve().path == "exact" and resolve().metrics == ("true_w2", "true_kl", "model_trace", "model_logdet")
    assert resolve(dict(model="gmm")).path == "samples"
    assert resolve(dict(accumulate=True, budget=10)).path == "samples"
    assert resolve(dict(path="samples")).metrics == RunConfig.metrics
    with pytest.raises(madloop.MadloopError, match="path 'exact' needs"):
        resolve(dict(path="exact", model="gmm"))


@pytest.mark.parametrize("settings, message", [
    (dict(accumulate="no"), "accumulate must be true or false, got 'no'"),
    (dict(accumulate=1), "accumulate must be true or false, got 1"),
    (dict(lam=True), "lam must be a finite number, got True"),
    (dict(lam=float("nan")), "lam must be a finite number, got nan"),
    (dict(seed=True), "seed must be an integer (64-bit), got True"),
    (dict(gens=10**20), "gens must be an integer (64-bit), got 100000000000000000000"),
    (dict(runs=2.0), "runs must be an integer (64-bit), got 2.0"),
    (dict(budget="10", accumulate=True), "budget must be an integer (64-bit) or none, got '10'"),
    (dict(algo="sims", omega=float("inf")), "option 'omega' of algorithm 'sims' must be a finite number, got inf"),
    (dict(algo="sims", interval=(0, "1")), "option 'interval' of algorithm 'sims' must be a list of 2 finite numbers, got (0, '1')"),
    (dict(model="gmm", k=True), "option 'k' of model 'gmm' must be an integer (64-bit), got True"),
    (dict(cov=((1, 0), (0, float("nan")))), "option 'cov' of data source 'gaussian' must be a list of lists of finite numbers"),
])
def test_settings_are_typed_strictly(settings, message):
    with pytest.raises(madloop.MadloopError) as err:
        resolve(settings)
    assert message in str(err.value)


def test_a_number_option_given_an_integer_holds_a_float():
    cfg = resolve(dict(lam=1, algo="sims", omega=3))
    assert type(cfg.lam) is float and type(cfg.algo_options["omega"]) is float


def test_validate_checks_a_stored_config_as_strictly():
    with pytest.raises(madloop.MadloopError, match="accumulate must be true or false, got 'no'"):
        validate(RunConfig.from_dict({**resolve().to_dict(), "accumulate": "no"}))
    with pytest.raises(madloop.MadloopError, match="option 'std' of data source 'mixture' must be a finite number"):
        validate(RunConfig.from_dict({**resolve(dict(data="mixture")).to_dict(), "data_options": {"std": float("nan")}}))


def test_resolving_builds_the_data_source_once(tmp_path, monkeypatch):
    np.save(tmp_path / "c.npy", np.random.default_rng(0).normal(size=(300, 2)))
    reads = []
    read = data_module.read_points
    monkeypatch.setattr(data_module, "read_points", lambda path: reads.append(path) or read(path))
    resolve(dict(data="file", file=str(tmp_path / "c.npy")))
    assert len(reads) == 1


def test_the_exact_path_swaps_in_its_parts_in_one_place():
    from madloop.models.exact import ExactGaussian, Stats, StatsData
    from madloop.rng import RunRNG

    exact, samples = resolve(), resolve(dict(path="samples"))
    assert exact_path.applies(exact) and exact_path.applies(samples) and not exact_path.applies(resolve(dict(model="gmm")))
    parts = build(exact)
    assert isinstance(parts.data, StatsData) and isinstance(parts.model, ExactGaussian) and parts.points is parts.data.source
    model = parts.model.fit(parts.data.sample(30, RunRNG(0, range(3), 1, "real")), None)
    assert isinstance(model.sample(5, RunRNG(0, range(3), 1, "synth")), Stats)
    assert parts.sample_points(model, 5, RunRNG(0, range(3), 1, "eval"), 1.0).x.shape == (3, 5, 2)
    plain = build(samples)
    model = plain.model.fit(plain.data.sample(30, RunRNG(0, range(3), 1, "real")), RunRNG(0, range(3), 1, "train"))
    drawn = plain.sample_points(model, 5, RunRNG(0, range(3), 1, "eval"), 1.0).x
    assert plain.data is plain.points and np.array_equal(drawn, model.sample(5, RunRNG(0, range(3), 1, "eval"), 1.0).x)


def test_metric_generations_are_counted_without_listing_them():
    for gens, every in [(10, 4), (3, 1), (50, 7), (1, 1), (22, 5), (21, 20)]:
        cfg = resolve(dict(gens=gens, every=every))
        assert [g for g in range(gens + 2) if cfg.evaluates(g)] == cfg.eval_gens()
        for start in (1, 2, 5, 20, 21, 60):
            assert cfg.eval_count(start) == sum(g >= start for g in cfg.eval_gens())
    huge = resolve(dict(gens=10**15, every=3))  # listing these would never end
    assert huge.eval_count() == (10**15 - 1) // 3 + 1 and huge.evaluates(10**15) and not huge.evaluates(3)
