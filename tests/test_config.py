import json

import pytest

import madloop
from madloop.config import PRESETS, RunConfig, resolve


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
    assert cfg.model_options == {"k": 3, "iters": 100, "reg": 1e-6}
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
    with pytest.raises(madloop.MadloopError, match="algorithm 'sims' needs a model family that can finetune and guided; 'gaussian' cannot"):
        resolve(dict(algo="sims", model="gaussian"))


def test_the_exact_path_is_chosen_where_it_applies():
    assert resolve().path == "exact" and resolve().metrics == ("true_w2", "true_kl", "model_trace", "model_logdet")
    assert resolve(dict(model="gmm")).path == "samples"
    assert resolve(dict(accumulate=True, budget=10)).path == "samples"
    assert resolve(dict(path="samples")).metrics == RunConfig.metrics
    with pytest.raises(madloop.MadloopError, match="path 'exact' needs"):
        resolve(dict(path="exact", model="gmm"))
