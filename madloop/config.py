"""Run configuration: a frozen dataclass that round-trips through JSON and TOML, and named presets.

The names here are the CLI's flags (``n_synth`` is ``--n-synth``) and ``madloop.run``'s keywords.
Options of the chosen data source, model family and algorithm (``omega``, ``k``, ``cov`` ...) are
given by their own names too (or ``model.k``, ``data.k`` where two components share a name); ``resolve`` files them under ``data_options``, ``model_options`` and
``algo_options`` with every default filled in, so a saved config says everything that was used.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import tomli_w

from madloop.errors import MadloopError
from madloop.loop import LOOPS
from madloop.registry import ALGOS, DATA, METRICS, MODELS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers.

    loop: fully_synthetic | augmentation | fresh (SPEC section 1); accumulate keeps all past synthetic
    sets, subsampled to ``budget`` points when given. n_real = |D_r|, n_synth = |S^t|, lam = sampling
    bias lambda in (0, 1]. Metrics are computed every ``every`` generations (and always at the first and
    last) on ``n_eval`` fresh samples of G^t (drawn with lam) against ``n_ref`` reference points from
    p_r shared by all runs; generation 0 holds the same metrics for a real sample of size n_eval, the
    floor that no model can beat at these sample sizes.

    path: "exact" draws the sufficient statistics of Gaussian data instead of samples (Gaussian model,
    Gaussian data, standard training, no budget: see models/exact.py), "samples" materialises every
    set, "auto" takes the exact path wherever it applies; its default metrics are closed-form
    distances to the truth. Per-run rows are stored for the first ``store_runs`` runs; summaries
    always cover every run.
    """

    loop: str = "fully_synthetic"
    data: str = "gaussian"
    model: str = "gaussian"
    algo: str = "standard"
    n_real: int = 100
    n_synth: int = 100
    accumulate: bool = False
    budget: int | None = None
    lam: float = 1.0
    gens: int = 50
    runs: int = 1000
    seed: int = 0
    metrics: tuple[str, ...] = ("w2", "gauss_w2", "mean_err", "cov_err")
    every: int = 1
    n_eval: int = 250
    n_ref: int = 250
    path: str = "auto"
    store_runs: int = 10_000
    data_options: Mapping[str, Any] = field(default_factory=dict)
    model_options: Mapping[str, Any] = field(default_factory=dict)
    algo_options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _thaw(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "RunConfig":
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise MadloopError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**{k: _freeze(v) for k, v in raw.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_none(self.to_dict()))

    def eval_gens(self) -> list[int]:
        """Generations at which metrics are computed: every ``every``-th, plus the first and the last."""
        return sorted({1, self.gens, *range(1, self.gens + 1, self.every)})


def _freeze(v: Any) -> Any:
    """Lists become tuples (hashable, and equal after a JSON round trip); dicts are frozen inside."""
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, Mapping):
        return {k: _freeze(x) for k, x in v.items()}
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_thaw(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    return v


def _drop_none(v: Any) -> Any:
    """TOML has no null: a None option is left out and comes back as its default."""
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    return v


# Named presets: overrides of the defaults, in one place. "default" is what `madloop run` runs.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "collapse": dict(loop="fully_synthetic", n_real=20, n_synth=20, gens=50, runs=1000, metrics=("gauss_w2", "model_trace", "model_logdet")),
    "augmentation": dict(loop="augmentation", n_real=100, n_synth=100),
    "fresh": dict(loop="fresh", n_real=100, n_synth=100),
    "accumulate": dict(loop="fully_synthetic", accumulate=True),
    "gmm-ring": dict(data="mixture", model="gmm", data_options={"layout": "ring", "k": 8}, model_options={"k": 8}, n_real=500, n_synth=500, gens=20, runs=20, metrics=("w2", "sliced_w2")),
    "gmm-grid": dict(data="mixture", model="gmm", data_options={"layout": "grid", "k": 9}, model_options={"k": 9}, n_real=500, n_synth=500, gens=20, runs=20, metrics=("w2", "sliced_w2")),
}

# Settings a choice of algorithm or model family implies unless given (lowest precedence after the
# defaults): `--algo sims` alone runs SIMS on the 2D diffusion model at a size a laptop CPU finishes.
IMPLIED: dict[str, dict[str, dict[str, Any]]] = {
    "algo": {"sims": dict(model="ddpm")},
    "model": {
        "ddpm": dict(runs=8, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, metrics=("gauss_w2", "sliced_w2")),
        "edm": dict(runs=8, n_real=1000, n_synth=1000, n_eval=1000, n_ref=1000, metrics=("gauss_w2", "sliced_w2")),
    },
}


def implied_layers(layers: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The IMPLIED settings of the algorithm and model family that ``layers`` choose (model's first)."""
    def chosen(name: str, fallback: str) -> str:
        return next((layer[name] for layer in reversed(layers) if name in layer), fallback)

    by_algo = IMPLIED["algo"].get(chosen("algo", RunConfig.algo), {})
    model = chosen("model", by_algo.get("model", RunConfig.model))
    return [IMPLIED["model"].get(model, {}), by_algo]


CORE_FIELDS = {f.name for f in dataclasses.fields(RunConfig)} - {"data_options", "model_options", "algo_options"}
COMPONENTS = {"data": DATA, "model": MODELS, "algo": ALGOS}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a .json or .toml config file."""
    path = Path(path)
    if not path.is_file():
        raise MadloopError(f"config file {path} does not exist")
    try:
        if path.suffix == ".json":
            raw = json.loads(path.read_text())
        elif path.suffix == ".toml":
            raw = tomllib.loads(path.read_text())
        else:
            raise MadloopError(f"config file {path} must end in .json or .toml")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MadloopError(f"config file {path} is malformed: {err}") from None
    if not isinstance(raw, dict):
        raise MadloopError(f"config file {path} must hold a table of settings")
    return raw


def resolve(settings: Mapping[str, Any] = (), *, preset: str | None = None, config_file: str | Path | None = None) -> RunConfig:
    """Defaults < preset < config file < settings, validated, with every component option filled in.

    ``settings`` mixes core fields and component options by their own names; unknown names fail.
    """
    merged: dict[str, Any] = {}
    layers = []
    if preset is not None:
        if preset not in PRESETS:
            raise MadloopError(f"unknown preset '{preset}'; choose from: {', '.join(PRESETS)}")
        layers.append(PRESETS[preset])
    if config_file is not None:
        layers.append(read_config_file(config_file))
    layers.append(dict(settings))
    layers = implied_layers(layers) + layers
    options: dict[str, dict[str, Any]] = {kind: {} for kind in COMPONENTS}
    for layer in layers:
        for key, value in layer.items():
            if key.endswith("_options") and key[: -len("_options")] in COMPONENTS:
                if not isinstance(value, Mapping):
                    raise MadloopError(f"{key} must be a table of options")
                options[key[: -len("_options")]].update(value)
            else:
                merged[key] = value
    # Names chosen for each component, then its options: nested tables, plus flat names it owns.
    names = {kind: merged.get(kind, getattr(RunConfig, kind)) for kind in COMPONENTS}
    classes = {kind: COMPONENTS[kind][names[kind]] for kind in COMPONENTS}
    for key in [k for k in merged if k not in CORE_FIELDS]:
        kind, dot, name = key.rpartition(".")
        owners = [kind] if dot and kind in COMPONENTS else [k for k, cls in classes.items() if name in _option_types(cls)]
        if len(owners) > 1:
            raise MadloopError(f"option '{name}' belongs to {' and '.join(owners)}; write {' or '.join(f'{o}.{name}' for o in owners)}")
        if not owners:
            valid = sorted(CORE_FIELDS | {o for cls in classes.values() for o in _option_types(cls)})
            raise MadloopError(f"option '{key}' is unknown here; valid options: {', '.join(valid)}")
        options[owners[0]][name] = merged.pop(key)
    core = {k: _freeze(v) for k, v in merged.items()}
    core.update({f"{kind}_options": _resolve_options(kind, names[kind], classes[kind], options[kind]) for kind in COMPONENTS})
    cfg = RunConfig.from_dict(core)
    path = choose_path(cfg)
    cfg = dataclasses.replace(cfg, path=path, **({} if "metrics" in merged else {"metrics": DEFAULT_METRICS[path]}))
    validate(cfg)
    return cfg


DEFAULT_METRICS = {"samples": RunConfig.metrics, "exact": ("true_w2", "true_kl", "model_trace", "model_logdet")}


def exact_applies(cfg: RunConfig) -> bool:
    return (cfg.model, cfg.data, cfg.algo, cfg.budget) == ("gaussian", "gaussian", "standard", None)


def choose_path(cfg: RunConfig) -> str:
    """The path a config runs on: "auto" becomes "exact" where the exact Gaussian path applies."""
    if cfg.path not in ("auto", "exact", "samples"):
        raise MadloopError(f"path must be auto, exact or samples, got '{cfg.path}'")
    if cfg.path == "exact" and not exact_applies(cfg):
        raise MadloopError("path 'exact' needs model gaussian, data gaussian, algo standard and no budget")
    if cfg.path == "auto":
        return "exact" if exact_applies(cfg) else "samples"
    return cfg.path


def takes_tuple(name: str) -> bool:
    """Whether a setting's own value is a tuple (``metrics``, ``mean``, ``cov`` ...) in any component."""
    name = name.rpartition(".")[2]
    hints = [typing.get_type_hints(RunConfig).get(name)]
    hints += [_option_types(reg[n]).get(name) for reg in COMPONENTS.values() for n in reg.names()]
    return any(typing.get_origin(a) is tuple for h in hints if h is not None for a in (h, *typing.get_args(h)))


def _option_types(cls) -> dict[str, Any]:
    if not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}


def _resolve_options(kind: str, name: str, cls, given: Mapping[str, Any]) -> dict[str, Any]:
    types = _option_types(cls)
    unknown = set(given) - set(types)
    if unknown:
        raise MadloopError(f"{kind} '{name}' has no option {', '.join(sorted(unknown))}; its options: {', '.join(types) or 'none'}")
    coerced = {key: _coerce(kind, name, key, value, types[key]) for key, value in given.items()}
    try:
        component = cls(**coerced)
    except (TypeError, ValueError) as err:
        raise MadloopError(f"{kind} '{name}': {err}") from None
    return {key: _freeze(getattr(component, key)) for key in types}


def _coerce(kind: str, name: str, key: str, value: Any, hint: Any) -> Any:
    """Check a scalar option against its declared type (int, float, bool, str); containers pass as given."""
    value = _freeze(value)
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, str):
            return value
        if typing.get_origin(t) is tuple and isinstance(value, tuple):
            return value
    raise MadloopError(f"option '{key}' of {kind} '{name}' must be {_type_name(hint)}, got {value!r}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def validate(cfg: RunConfig) -> None:
    """Raise MadloopError, naming the problem and the valid choices, for any invalid setting."""
    for name, registry in (("loop", LOOPS), ("data", DATA), ("model", MODELS), ("algo", ALGOS)):
        registry[getattr(cfg, name)]  # raises with the valid choices
    for name in cfg.metrics:
        METRICS[name]
    needs = getattr(ALGOS[cfg.algo], "needs", ())
    missing = [cap for cap in needs if not hasattr(MODELS[cfg.model], cap)]
    if missing:
        able = [m for m in MODELS.names() if all(hasattr(MODELS[m], c) for c in needs)]
        raise MadloopError(f"algorithm '{cfg.algo}' needs a model family that can {' and '.join(missing)}; "
                           f"'{cfg.model}' cannot (use one of: {', '.join(able)})")
    for name in ("n_real", "n_synth", "gens", "runs", "every", "n_eval", "n_ref", "store_runs"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MadloopError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise MadloopError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    if not isinstance(cfg.lam, (int, float)) or not 0 < cfg.lam <= 1:
        raise MadloopError(f"lam must be in (0, 1], got {cfg.lam!r}")
    if cfg.budget is not None:
        if not cfg.accumulate:
            raise MadloopError("budget subsamples accumulated synthetic data: it needs accumulate")
        if not isinstance(cfg.budget, int) or cfg.budget < 1:
            raise MadloopError(f"budget must be a positive integer, got {cfg.budget!r}")
    if not isinstance(cfg.metrics, tuple) or not cfg.metrics:
        raise MadloopError("metrics must name at least one metric")
    size = getattr(build_data(cfg), "size", None)
    for name in ("n_real", "n_ref", "n_eval"):
        if size is not None and getattr(cfg, name) > size:
            raise MadloopError(f"{name}={getattr(cfg, name)} exceeds the {size} points of the data source")


def build_data(cfg: RunConfig):
    return DATA[cfg.data](**cfg.data_options)
