"""Training algorithms A: how a generation turns its training set into a model (SPEC section 1).

Every algorithm is a frozen dataclass with three steps, so that the loop and the paired evaluation
(madloop.evaluate) run the same code:
- ``train(spec, data, rng, previous, ...)``: the whole of A, fitting a base on ``data`` with ``rng.child(FIT)``
  (every algorithm fits its base with this same stream, so runs with one seed share G^1's base);
- ``auxiliary(spec, base, data, rng, real, source)``: what A makes beyond the base (SIMS's auxiliary copy, the
  bad model of autoguidance, the continued base), or None;
- ``combine(spec, base, aux)``: the model that A samples from.
``sampling`` names the options that act in ``combine`` only (omega, the guidance interval): samplers that differ
in them share one auxiliary model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from madloop.models.base import Model, ModelSpec
from madloop.registry import ALGOS
from madloop.rng import Role, RunRNG
from madloop.samples import Samples

register = ALGOS.register


def auxiliary_needed(algo) -> bool:
    """Whether ``algo`` makes its auxiliary model: not when it has none (``makes_auxiliary`` False), nor at
    omega = 0, where the model would have no weight (the same samples at half the cost)."""
    return getattr(algo, "makes_auxiliary", True) and getattr(algo, "omega", None) != 0


def guide(algo, spec: ModelSpec, base: Model, data: Samples, rng: RunRNG, real: Samples | None = None,
          source=None) -> Model:
    """What ``algo`` samples from, given its trained ``base`` (``rng``: the training stream that fitted it)."""
    aux = algo.auxiliary(spec, base, data, rng, real, source) if auxiliary_needed(algo) else None
    return algo.combine(spec, base, aux)


@register("standard")
@dataclass(frozen=True)
class Standard:
    """Fit the model family to the training set; nothing else."""

    sampling: ClassVar[tuple[str, ...]] = ()
    makes_auxiliary: ClassVar[bool] = False

    def train(self, spec: ModelSpec, data: Samples, rng: RunRNG, previous: Model | None) -> Model:
        return spec.fit(data, rng.child(Role.FIT))

    def auxiliary(self, spec: ModelSpec, base: Model, data: Samples, rng: RunRNG, real: Samples | None = None,
                  source=None) -> None:
        return None

    def combine(self, spec: ModelSpec, base: Model, aux: None) -> Model:
        return base
