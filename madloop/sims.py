"""SIMS: Self-IMproving diffusion models with Synthetic data (Alemohammad et al. 2024; SPEC section 3).

Symbols: omega the guidance strength (EDM2's autoguidance weight is w = 1 + omega; madloop uses omega
only), n_aux the size of the internal synthetic set S (the paper's n_s), aux_epochs the fine-tuning budget B in
epochs over S.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from madloop.models.base import Model, ModelSpec
from madloop.registry import ALGOS
from madloop.rng import Role, RunRNG
from madloop.samples import Samples


@ALGOS.register("sims")
@dataclass(frozen=True)
class SIMS:
    """Train a base model, build its auxiliary model from its own samples, sample with negative guidance.

    ``interval`` = (lo, hi): the sampler's step i of N (i = 0 the noisiest) is guided when lo <= i / N < hi;
    (0, 1) guides every step. ``warm_start``: generation t's base continues from generation t-1's base
    (fine-tuned on D^t for the spec's epochs, keeping its standardisation) instead of a fresh one.
    omega = 0 samples exactly as the base model; omega = -1 as the auxiliary model alone.
    """

    # What the model family must provide (checked in config): fine-tuning and guidance, and a budget in epochs
    # (the unet counts its budget in images: SIMS on images is not wired yet).
    needs: ClassVar[tuple[str, ...]] = ("finetune", "guided", "epochs")

    omega: float = 1.0
    n_aux: int = 2000
    aux_epochs: int = 50
    interval: tuple[float, float] = (0.0, 1.0)
    warm_start: bool = False

    def __post_init__(self):
        if not math.isfinite(self.omega):
            raise ValueError(f"sims needs a finite omega, got {self.omega}")
        if self.n_aux < 1 or self.aux_epochs < 0:
            raise ValueError(f"sims needs n_aux >= 1 and aux_epochs >= 0, got {self.n_aux} and {self.aux_epochs}")
        if len(self.interval) != 2 or not 0 <= self.interval[0] < self.interval[1] <= 1:
            raise ValueError(f"sims needs an interval (lo, hi) with 0 <= lo < hi <= 1, got {self.interval}")
        object.__setattr__(self, "interval", tuple(float(v) for v in self.interval))  # JSON gives a list

    def train(self, spec: ModelSpec, data: Samples, rng: RunRNG, previous: Model | None) -> Model:
        if not all(hasattr(spec, cap) for cap in self.needs):
            raise ValueError(f"sims needs a model family that can fine-tune and guide (ddpm, edm), got {type(spec).__name__}")
        # 1. Base model: standard training on D (the same call as the standard algorithm), or warm-started.
        if self.warm_start and previous is not None:
            base = spec.finetune(previous.base, data, rng.child(Role.FIT), spec.epochs)
        else:
            base = spec.fit(data, rng.child(Role.FIT))
        if self.omega == 0:  # the auxiliary model has no weight: skip it (the same samples at half the cost)
            return spec.guided(base, base, 0.0, self.interval)
        # 2. Internal synthetic set S: n_aux unguided, unbiased samples of the base.
        s = base.sample(self.n_aux, rng.child(Role.AUX_SAMPLES))
        # 3. Auxiliary model: the base fine-tuned on S alone for B epochs; S is then discarded.
        aux = spec.finetune(base, s, rng.child(Role.AUX_FIT), self.aux_epochs)
        # 4. Extrapolated prediction (1 + omega) base - omega aux.
        return spec.guided(base, aux, self.omega, self.interval)
