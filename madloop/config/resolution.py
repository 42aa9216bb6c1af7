"""Resolution: layers of settings -> a checked RunConfig; the one place where names become components.

Layers, lowest first: the defaults, what the chosen algorithm and model family imply (presets.IMPLIED),
a preset, a config file, the settings given (flags or keywords). Settings mix the RunConfig's fields
and the options of the chosen components by their own names (``omega``, ``k``; ``model.k`` where two
components share a name). Resolution routes every option to its component, checks every value against
its declared type strictly (``strict``), builds each component once from its registered name (its
constructor checks the option values), and files every option, defaults included, under
``data_options``, ``model_options`` and ``algo_options``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

from madloop import exact_path, remedies
from madloop.config.presets import PRESETS, implied
from madloop.config.schema import CORE_FIELDS, OPTION_TABLES, RunConfig, freeze, read_config_file
from madloop.errors import MadloopError
from madloop.loop import LOOPS
from madloop.metrics.base import NEEDS_IMAGES
from madloop.models.base import can
from madloop.registry import ALGOS, DATA, METRICS, MODELS

COMPONENTS = {"data": DATA, "model": MODELS, "algo": ALGOS}
CORE_TYPES = {name: hint for name, hint in typing.get_type_hints(RunConfig).items() if name in CORE_FIELDS}
DEFAULT_METRICS = {"samples": RunConfig.metrics, "exact": exact_path.METRICS}


def resolve(settings: Mapping[str, Any] = (), *, preset: str | None = None,
            config_file: str | Path | None = None) -> RunConfig:
    """Defaults < implied < preset < config file < settings, checked, with every component option filled in.

    ``settings`` mixes core fields and component options by their own names; unknown names fail.
    """
    layers = []
    if preset is not None:
        if preset not in PRESETS:
            raise MadloopError(f"unknown preset '{preset}'; choose from: {', '.join(PRESETS)}")
        layers.append(PRESETS[preset])
    if config_file is not None:
        layers.append(read_config_file(config_file))
    layers.append(dict(settings))
    # Merge the layers: core fields and flat options by name, option tables by component.
    given: dict[str, Any] = {}
    options: dict[str, dict[str, Any]] = {kind: {} for kind in COMPONENTS}
    for layer in layers:
        for key, value in layer.items():
            if key in OPTION_TABLES:
                if not isinstance(value, Mapping):
                    raise MadloopError(f"{key} must be a table of options")
                options[key.removesuffix("_options")].update(value)
            else:
                given[key] = strict(key, value, CORE_TYPES[key]) if key in CORE_FIELDS else value
    given = {**implied(given), **given}
    # Route each flat option to the chosen component that has it.
    names = {kind: given.get(kind, getattr(RunConfig, kind)) for kind in COMPONENTS}
    classes = {kind: COMPONENTS[kind][names[kind]] for kind in COMPONENTS}
    for key in [k for k in given if k not in CORE_FIELDS]:
        kind, dot, name = key.rpartition(".")
        owners = [kind] if dot and kind in COMPONENTS else [k for k, c in classes.items() if name in option_types(c)]
        if len(owners) > 1:
            raise MadloopError(f"option '{name}' belongs to {' and '.join(owners)}; "
                               f"write {' or '.join(f'{o}.{name}' for o in owners)}")
        if not owners:
            valid = sorted(CORE_FIELDS | {o for cls in classes.values() for o in option_types(cls)})
            raise MadloopError(f"option '{key}' is unknown here; valid options: {', '.join(valid)}")
        options[owners[0]][name] = given.pop(key)
    # Build each component once; its options, defaults included, go into the config.
    built = {kind: component(kind, names[kind], options[kind]) for kind in COMPONENTS}
    cfg = RunConfig(**given, **{f"{kind}_options": options_of(c) for kind, c in built.items()})
    if cfg.curate in remedies.CURATORS and cfg.curate_strength is None:
        cfg = dataclasses.replace(cfg, curate_strength=remedies.DEFAULT_STRENGTH[cfg.curate])
    _check_remedies(cfg, built)
    if cfg.path == "auto":
        cfg = dataclasses.replace(cfg, path="exact" if exact_path.applies(cfg) else "samples")
    if "metrics" not in given:
        cfg = dataclasses.replace(cfg, metrics=DEFAULT_METRICS.get(cfg.path, cfg.metrics))
    if cfg.curate is not None and "accepted" not in cfg.metrics:
        cfg = dataclasses.replace(cfg, metrics=(*cfg.metrics, "accepted"))  # curation's cost is always recorded
    _check(cfg, built)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Raise MadloopError, naming the problem and the valid choices, for any invalid setting."""
    for name, hint in CORE_TYPES.items():
        strict(name, getattr(cfg, name), hint)
    _check(cfg, components(cfg))


def smallest_training_set(cfg: RunConfig) -> int:
    """The fewest points a generation trains on: D_r at t = 1; S^(t-1) alone (cut to the budget) in the fully
    synthetic loop; the other loops add real data to S^(t-1)."""
    if cfg.loop != "fully_synthetic" or cfg.gens == 1:
        return cfg.n_real
    return min(cfg.n_real, cfg.n_synth, cfg.budget or cfg.n_synth)


def components(cfg: RunConfig) -> dict[str, Any]:
    """The data source, model spec and algorithm that ``cfg`` names, built from their options."""
    return {kind: component(kind, getattr(cfg, kind), getattr(cfg, f"{kind}_options")) for kind in COMPONENTS}


def build_data(cfg: RunConfig):
    return component("data", cfg.data, cfg.data_options)


def component(kind: str, name: str, options: Mapping[str, Any]):
    """The ``kind`` registered as ``name``, built from ``options`` checked against its declared types."""
    registry = COMPONENTS[kind]
    cls, what = registry[name], f"{registry.kind} '{name}'"
    hints = option_types(cls)
    unknown = set(options) - set(hints)
    if unknown:
        raise MadloopError(f"{what} has no option {', '.join(sorted(unknown))}; "
                           f"its options: {', '.join(hints) or 'none'}")
    typed = {key: strict(f"option '{key}' of {what}", value, hints[key]) for key, value in options.items()}
    try:
        return cls(**typed)
    except (TypeError, ValueError) as err:
        raise MadloopError(f"{what}: {err}") from None


def options_of(built) -> dict[str, Any]:
    """A built component's options, defaults included, as a config holds them."""
    return {key: freeze(getattr(built, key)) for key in option_types(type(built))}


def option_types(cls) -> dict[str, Any]:
    """A component's options and their declared types: the fields of its dataclass."""
    if not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}


def takes_tuple(name: str) -> bool:
    """Whether a setting's own value is a tuple (``metrics``, ``mean``, ``cov`` ...) in any component."""
    name = name.rpartition(".")[2]
    hints = [CORE_TYPES.get(name)]
    hints += [option_types(reg[n]).get(name) for reg in COMPONENTS.values() for n in reg.names()]
    return any(typing.get_origin(a) is tuple for h in hints if h is not None for a in (h, *typing.get_args(h)))


# Strict types: a bool is not a number, text is not a bool, numbers are finite, and integers fit in
# 64 bits (TOML's integers, and the tables' int64 columns).
WORDS = {bool: ("true or false", "true or false values"), int: ("an integer (64-bit)", "integers (64-bit)"),
         float: ("a finite number", "finite numbers"), str: ("a string", "strings"), type(None): ("none", "none")}


def strict(what: str, value: Any, hint: Any) -> Any:
    """``value`` if it has the type ``hint`` (an integer given for a number becomes a float); else an
    error naming ``what``, the type in words and the value."""
    value = freeze(value)
    if not conforms(value, hint):
        raise MadloopError(f"{what} must be {type_name(hint)}, got {value!r}")
    alternatives = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return float(value) if isinstance(value, int) and float in alternatives and int not in alternatives else value


def conforms(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is tuple:
        items = args[:1] * len(value) if args[1:] == (...,) and isinstance(value, tuple) else args
        return isinstance(value, tuple) and len(value) == len(items) and all(map(conforms, value, items))
    if origin is typing.Literal:
        return value in args
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return -2**63 <= value < 2**63 if isinstance(value, int) else hint is float and math.isfinite(value)
    return isinstance(value, hint) if isinstance(hint, type) else True  # Any, other containers: the component checks


def type_name(hint: Any, plural: bool = False) -> str:
    """A declared type in words: 'a finite number', 'a list of lists of finite numbers or none' ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a, plural) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is tuple and len({a for a in args if a is not ...}) == 1:
        count = "" if args[1:] == (...,) else f"{len(args)} "
        return f"{'lists' if plural else 'a list'} of {count}{type_name(args[0], plural=True)}"
    return WORDS[hint][plural] if hint in WORDS else getattr(hint, "__name__", str(hint))


def _able(registry, holds: Callable[[Any], bool]) -> str:
    return ", ".join(n for n in registry.names() if holds(registry[n])) or "none"


def _check_remedies(cfg: RunConfig, built: Mapping[str, Any]) -> None:
    """The remedies' settings (madloop/remedies.py), and whether the model family and data source can do them."""
    if cfg.real_weight is not None:
        if not 0 <= cfg.real_weight <= 1:
            raise MadloopError(f"real_weight must be in [0, 1], got {cfg.real_weight!r}")
        if cfg.loop == "fully_synthetic":
            raise MadloopError("real_weight weighs real against synthetic data, but the fully synthetic loop trains on "
                               "synthetic data alone: use loop augmentation or fresh")
        if not can(MODELS[cfg.model], "weighted"):
            raise MadloopError(f"real_weight needs a model family whose fit takes sample weights; '{cfg.model}' does not "
                               f"(use one of: {_able(MODELS, lambda m: can(m, 'weighted'))})")
    if cfg.curate is None:
        if cfg.curate_strength is not None:
            raise MadloopError("curate_strength sets the strength of curation: it needs curate (oracle or quantile)")
    else:
        if cfg.curate not in remedies.CURATORS:
            raise MadloopError(f"curate must be one of: {', '.join(remedies.CURATORS)}; got '{cfg.curate}'")
        low, high = remedies.STRENGTH_RANGE[cfg.curate]
        if cfg.curate_strength is None or not low <= cfg.curate_strength <= high:
            raise MadloopError(f"curate_strength of {cfg.curate} curation must be in [{low:g}, {high:g}], "
                               f"got {cfg.curate_strength!r}")
        if cfg.curate == "oracle" and not can(MODELS[cfg.model], "density"):
            raise MadloopError(f"oracle curation needs the density of the model's samples; the '{cfg.model}' family has "
                               f"none (use one of: {_able(MODELS, lambda m: can(m, 'density'))}, or curate quantile)")
        if not hasattr(built["data"], "log_prob"):
            raise MadloopError(f"{cfg.curate} curation needs the density of p_r; data source '{cfg.data}' does not know "
                               f"it (use one of: {_able(DATA, lambda d: hasattr(d, 'log_prob'))})")
    if cfg.correct is not None:
        if cfg.correct < 0:
            raise MadloopError(f"correct (the strength of self-correction) must be >= 0, got {cfg.correct!r}")
        if not hasattr(built["data"], "score"):
            able = _able(DATA, lambda d: hasattr(d, "score"))
            raise MadloopError(f"correct takes Langevin steps on log p_r, which needs its gradient; data source "
                               f"'{cfg.data}' does not know it (use one of: {able})")
    if cfg.correct_steps < 1:
        raise MadloopError(f"correct_steps must be a positive integer, got {cfg.correct_steps!r}")


def _check(cfg: RunConfig, built: Mapping[str, Any]) -> None:
    """The settings' values and how they go together; ``built``: the components (``components``)."""
    LOOPS[cfg.loop]  # raises with the valid choices
    _check_remedies(cfg, built)
    if "accepted" in cfg.metrics and cfg.curate is None:
        raise MadloopError("metric 'accepted' is curation's accepted share: it needs curate")
    for name in cfg.metrics:
        METRICS[name]
    if any(getattr(METRICS[name], "images", False) for name in cfg.metrics) and not hasattr(built["data"], "feature_set"):
        raise MadloopError(NEEDS_IMAGES)
    needs = getattr(ALGOS[cfg.algo], "needs", ())
    missing = [cap for cap in needs if not can(MODELS[cfg.model], cap)]
    if missing:
        able = [m for m in MODELS.names() if all(can(MODELS[m], c) for c in needs)]
        raise MadloopError(f"algorithm '{cfg.algo}' needs a model family with {' and '.join(missing)}; "
                           f"'{cfg.model}' has no {missing[0]} (use one of: {', '.join(able)})")
    for kind in ("model", "algo"):  # what a model or an algorithm needs of the rest of the run (enough real data, labels)
        check_run = getattr(built[kind], "check_run", None)
        if check_run is not None:
            check_run(cfg, built)
    for name in ("n_real", "n_synth", "gens", "runs", "every", "n_eval", "n_ref", "store_runs"):
        if getattr(cfg, name) < 1:
            raise MadloopError(f"{name} must be a positive integer, got {getattr(cfg, name)!r}")
    if cfg.seed < 0:
        raise MadloopError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    if not 0 < cfg.lam <= 1:
        raise MadloopError(f"lam must be in (0, 1], got {cfg.lam!r}")
    if cfg.budget is not None:
        if not cfg.accumulate:
            raise MadloopError("budget subsamples accumulated synthetic data: it needs accumulate")
        if cfg.budget < 1:
            raise MadloopError(f"budget must be a positive integer, got {cfg.budget!r}")
    if not cfg.metrics:
        raise MadloopError("metrics must name at least one metric")
    if cfg.path not in ("auto", "exact", "samples"):
        raise MadloopError(f"path must be auto, exact or samples, got '{cfg.path}'")
    if cfg.path == "exact" and not exact_path.applies(cfg):
        raise MadloopError("path 'exact' needs model gaussian, data gaussian, algo standard, no budget and no curation "
                           "or correction")
    need = getattr(built["model"], "min_points", None)
    if need is not None and smallest_training_set(cfg) < need:
        raise MadloopError(f"model '{cfg.model}' needs at least {need} training points per run; the smallest training "
                           f"set here has {smallest_training_set(cfg)} (raise n_real or n_synth, or change the model's options)")
    # A finite data source is drawn without replacement: the training pool (D_r, fresh draws, the real floor
    # sample) and, where the source holds one apart, the reference pool.
    data = built["data"]
    pool = getattr(data, "available", None)
    split = hasattr(data, "reference_available")
    reference = data.reference_available if split else pool
    for name, limit, what in (("n_real", pool, "training pool"), ("n_eval", pool, "training pool"),
                              ("n_ref", reference, "reference pool")):
        if limit is not None and getattr(cfg, name) > limit:
            where = f"images in the data source's {what}" if split else "points of the data source"
            raise MadloopError(f"{name}={getattr(cfg, name)} exceeds the {limit} {where}")
