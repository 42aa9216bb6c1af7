"""What a model family and a training algorithm provide (structural protocols).

A model *spec* holds hyperparameters and fits; a fitted *model* is a value that samples. Both act on a
chunk of Monte-Carlo runs at once: a spec fits one model per run, in one vectorised pass where the
family allows it.

A family declares what else it can do in ``capabilities``, a ClassVar frozenset of ``CAPABILITIES``' names
(``can(spec, name)`` asks; the algorithms' ``needs`` and the remedies' checks read it, and the conformance test
holds each family to what it declares). A fitted model that states its distribution gives
``model.moments() -> (mean (runs, d), cov (runs, d, d))``, which enables the model-moment metrics.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol, runtime_checkable

import numpy as np

from madloop.errors import MadloopError
from madloop.rng import RunRNG
from madloop.samples import Samples


CAPABILITIES = {
    "finetune": "spec.finetune(model, data, rng, budget) -> a trained copy, the original unchanged (SIMS); "
                "spec.budget_unit names the option that counts a fit's budget ('epochs' or 'images')",
    "guided": "spec.guided(base, aux, omega, interval) -> a model sampling with (1 + omega) s_base - omega s_aux",
    "width": "spec.width_option names the option that sets the network's width (autoguidance's narrower model)",
    "decoder_only": "spec.finetune(..., decoder_only=True) fine-tunes the decoder half only (SIMS's shared encoder)",
    "weighted": "fit reads per-sample weights Samples.w (real-data weighting, real_weight)",
    "density": "fitted models give model.log_prob(x, lam) -> (runs, n), the log density of what they sample with "
               "bias lam (oracle curation)",
}


def can(spec, capability: str) -> bool:
    """Whether a model family (its spec, or the spec's class) declares ``capability``."""
    if capability not in CAPABILITIES:
        raise ValueError(f"no capability {capability!r}; the capabilities are {', '.join(CAPABILITIES)}")
    return capability in getattr(spec, "capabilities", frozenset())


def check_points(family: str, data: Samples, rng: RunRNG) -> None:
    """What every family of vector models checks before a fit: points of shape (d,), one stream row per run."""
    if len(data.item_shape) != 1:
        raise MadloopError(f"the {family} model needs points of shape (d,), got items of shape {data.item_shape}")
    if rng.n_runs != data.n_runs:
        raise MadloopError(f"the random stream has {rng.n_runs} runs but the data has {data.n_runs}")


def check_torch_options(device: str, dtype: str) -> None:
    """The ``device`` and ``dtype`` options every torch family takes."""
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")


def check_training_options(spec, integers: tuple[str, ...]) -> None:
    """What the small torch families (flow, gan) check of their options: ``integers`` positive integers, ``lr`` a
    positive number, ``device`` one torch knows."""
    for name in integers:
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(spec.lr, (int, float)) and math.isfinite(spec.lr) and spec.lr > 0):
        raise ValueError(f"lr must be a positive number, got {spec.lr!r}")
    check_torch_options(spec.device, "float32")


def standardisation(x: np.ndarray, family: str) -> tuple[np.ndarray, np.ndarray]:
    """Each run's mean and standard deviation per coordinate of points x (runs, n, d), each (runs, 1, d)."""
    shift, scale = x.mean(1, keepdims=True), x.std(1, keepdims=True)
    if not scale.all():
        raise ValueError(f"the {family} standardises its data: a run has a constant coordinate (standard deviation 0)")
    return shift, scale


def torch_device(device: str):
    """The torch device a spec's ``device`` option names: "cpu", "cuda", or "auto" (cuda when torch sees one)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA device")
    return torch.device(device)


def same_sampler(a, b) -> bool:
    """Whether models of specs ``a`` and ``b`` combine in one guided sampler: the same family, equal in every option
    but the training budget (``budget_unit``), its schedule (``schedule_options``) and the network's width
    (``width_option``), which autoguidance's shorter-trained, narrower model changes."""
    if type(a) is not type(b):
        return False
    free = (a.budget_unit, a.width_option, *getattr(a, "schedule_options", ()))
    return dataclasses.replace(a, **{name: getattr(b, name) for name in free}) == b


def check_sampling(lam: float, rng: RunRNG, runs: int) -> None:
    """What every fitted model checks before it samples: a bias lam in (0, 1], one stream row per run."""
    if not 0 < lam <= 1:
        raise MadloopError(f"the sampling bias lam must be in (0, 1], got {lam}")
    if rng.n_runs != runs:
        raise MadloopError(f"the random stream has {rng.n_runs} runs but the model has {runs}")


@runtime_checkable
class Model(Protocol):
    def sample(self, n: int, rng: RunRNG, lam: float = 1.0) -> Samples:
        """n samples per run; ``lam`` in (0, 1] is the sampling bias (1 = unbiased, SPEC section 2)."""
        ...


@runtime_checkable
class ModelSpec(Protocol):
    def fit(self, data: Samples, rng: RunRNG) -> Model:
        """Train one model per run on that run's data."""
        ...


@runtime_checkable
class Algorithm(Protocol):
    def train(self, spec: ModelSpec, data: Samples, rng: RunRNG, previous: Model | None) -> Model:
        """Generation t's model from its training set; ``previous`` is generation t-1's (None at t = 1).

        An algorithm with ``loop_context = True`` also gets ``real=``, the loop's real data D_r, and ``source=``,
        the real-data source (whose ``label(x)`` classes SIMS's distribution control curates by)."""
        ...
