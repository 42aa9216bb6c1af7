"""Training algorithms A: how a generation turns its training set into a model (SPEC section 1)."""

from __future__ import annotations

from dataclasses import dataclass

from madloop.models.base import Model, ModelSpec
from madloop.registry import ALGOS
from madloop.rng import Role, RunRNG
from madloop.samples import Samples

register = ALGOS.register


@register("standard")
@dataclass(frozen=True)
class Standard:
    """Fit the model family to the training set; nothing else."""

    def train(self, spec: ModelSpec, data: Samples, rng: RunRNG, previous: Model | None) -> Model:
        # Every algorithm fits its base with this same stream, so runs with one seed share G^1's base.
        return spec.fit(data, rng.child(Role.FIT))
