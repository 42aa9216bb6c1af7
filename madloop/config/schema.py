"""The run configuration as data: a frozen dataclass that round-trips through JSON and TOML."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import tomli_w

from madloop.errors import MadloopError

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

    Remedies (madloop/remedies.py; SPEC section 4b): ``real_weight`` w in [0, 1] is the share of the
    training objective that the real data carries in a generation that trains on real and synthetic data
    (None: proportional to the counts; generation 1 trains on real data alone, with nothing to weigh, and the
    fully synthetic loop refuses it); ``curate`` ("oracle" or "quantile") keeps the synthetic samples a
    verifier accepts, at ``curate_strength`` (oracle: the exponent s in [0, 1] of the acceptance
    probability (p_r / p_model / M)^s, default 1; quantile: the quantile q in [0, 0.95] the score log p_r
    must reach, default 0.5); ``correct`` moves each synthetic sample toward p_r by ``correct_steps``
    Metropolis-adjusted Langevin steps on log p_r, for a Langevin time of ``correct`` (the strength).

    path: "exact" draws the sufficient statistics of Gaussian data instead of samples (see
    madloop/exact_path.py), "samples" materialises every set, "auto" takes the exact path wherever it
    applies; its default metrics are closed-form distances to the truth. Per-run rows are stored for
    the first ``store_runs`` runs; summaries always cover every run.

    ``data_options``, ``model_options`` and ``algo_options`` hold every option of the chosen data
    source, model family and algorithm, defaults included, so a saved config says everything used.
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
    real_weight: float | None = None
    curate: str | None = None
    curate_strength: float | None = None
    correct: float | None = None
    correct_steps: int = 10
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
        return cls(**{k: freeze(v) for k, v in raw.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_none(self.to_dict()))

    def eval_gens(self) -> list[int]:
        """Generations at which metrics are computed: every ``every``-th, plus the first and the last."""
        return sorted({1, self.gens, *range(1, self.gens + 1, self.every)})

    def evaluates(self, gen: int) -> bool:
        """Whether metrics are computed at generation ``gen`` (without listing them: gens may be huge)."""
        return gen == self.gens or gen in range(1, self.gens + 1, self.every)

    def eval_count(self, start: int = 1) -> int:
        """How many of the generations ``eval_gens`` lists are >= start, counted without listing them."""
        steps = range(1, self.gens + 1, self.every)
        return len(steps[max(0, -(-(start - 1) // self.every)):]) + (self.gens not in steps and self.gens >= start)


OPTION_TABLES = ("data_options", "model_options", "algo_options")
CORE_FIELDS = {f.name for f in dataclasses.fields(RunConfig)} - set(OPTION_TABLES)


def freeze(v: Any) -> Any:
    """Lists become tuples (hashable, and equal after a JSON round trip); dicts are frozen inside."""
    if isinstance(v, (list, tuple)):
        return tuple(freeze(x) for x in v)
    if isinstance(v, Mapping):
        return {k: freeze(x) for k, x in v.items()}
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


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a .json or .toml config file."""
    path = Path(path)
    if path.is_dir():
        raise MadloopError(f"config file {path} is a directory; give a .toml or .json file")
    if not path.is_file():
        raise MadloopError(f"config file {path} does not exist")
    if path.suffix not in (".json", ".toml"):
        raise MadloopError(f"config file {path} must end in .json or .toml")
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MadloopError(f"config file {path} is malformed: {err}") from None
    except OSError as err:
        raise MadloopError(f"config file {path} cannot be read: {err.strerror}") from None
    if not isinstance(raw, dict):
        raise MadloopError(f"config file {path} must hold a table of settings")
    return raw
