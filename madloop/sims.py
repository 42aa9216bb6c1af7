"""SIMS: Self-IMproving diffusion models with Synthetic data (Alemohammad et al. 2024; SPEC section 3), and
the two controls that separate its synthetic-data signal from look-alikes.

Symbols: omega the guidance strength (EDM2's autoguidance weight is w = 1 + omega; madloop uses omega
only), n_aux the size of the set the auxiliary model trains on (for SIMS the internal synthetic set S, the
paper's n_s), B the auxiliary model's training budget: ``aux_images`` training images seen, or ``aux_epochs``
passes over the n_aux items (B = aux_epochs x n_aux images). A family counts its budgets in its own unit
(``spec.budget_unit``: the 2D diffusion families in epochs, the unet in images) and the two options convert.

Three ways to make the auxiliary model that guides negatively, (1 + omega) D_base - omega D_aux:
- ``sims`` (aux_data="synthetic"): the base fine-tuned on n_aux of its own unguided samples (SIMS); with
  ``aux_proportions``, S is curated to those shares of groups of classes (SIMS's distribution control: guidance
  away from S moves the output toward the complement);
- ``sims`` with aux_data="real" (the real-data control): the base fine-tuned on n_aux images of the loop's
  real data D_r for the same budget: if SIMS only gains by fine-tuning more, this control gains as much;
- ``autoguidance`` (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"): a model
  of the same family trained from scratch on the base's own training set for the shorter budget B, optionally
  narrower (``aux_width``): guidance by a weaker model, with no synthetic data at all.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from madloop.algorithms import guide
from madloop.errors import MadloopError
from madloop.models.base import Model, ModelSpec, can
from madloop.registry import ALGOS
from madloop.rng import Role, RunRNG
from madloop.samples import Samples

AUX_DATA = ("synthetic", "real")
SCHEDULES = ("scaled", "base")  # autoguidance's bad model: the base's schedule shrunk to its budget, or kept


def base_budget(spec: ModelSpec) -> int:
    """The budget of a fit from scratch, in the family's unit (its ``epochs`` or ``images`` option)."""
    return getattr(spec, spec.budget_unit)


def aux_budget(spec: ModelSpec, n_aux: int, epochs: int | None, images: int | None) -> int:
    """The auxiliary model's budget in the family's unit, from aux_images (preferred when given) or aux_epochs.

    A family that counts epochs takes aux_images / n_aux epochs (a whole number, else an error); a family that
    counts images takes aux_epochs x n_aux images."""
    if spec.budget_unit == "images":
        return images if images is not None else epochs * n_aux
    if images is None:
        return epochs
    if images % n_aux:
        raise MadloopError(f"the {type(spec).__name__.lower()} family counts its budget in epochs over the "
                           f"n_aux = {n_aux} items: aux_images ({images}) must be a multiple of n_aux")
    return images // n_aux


def check_guidance(omega: float, interval: tuple[float, float], n_aux: int | None, epochs: int | None,
                   images: int | None) -> tuple[float, float]:
    """The options every negative-guidance algorithm shares; returns the interval as floats."""
    if not math.isfinite(omega):
        raise ValueError(f"guidance needs a finite omega, got {omega}")
    if n_aux is not None and n_aux < 1:
        raise ValueError(f"n_aux must be >= 1, got {n_aux}")
    if epochs is not None and epochs < 0 or images is not None and images < 0:
        raise ValueError(f"the auxiliary budget must be >= 0, got aux_epochs={epochs}, aux_images={images}")
    if len(interval) != 2 or not 0 <= interval[0] < interval[1] <= 1:
        raise ValueError(f"the guidance interval needs (lo, hi) with 0 <= lo < hi <= 1, got {interval}")
    return tuple(float(v) for v in interval)


def check_family(algo: str, spec: ModelSpec, needs: tuple[str, ...]) -> None:
    missing = [cap for cap in needs if not can(spec, cap)]
    if missing:
        raise ValueError(f"{algo} needs a model family that declares {' and '.join(needs)} (ddpm, edm and unet "
                         f"fine-tune and guide); {type(spec).__name__} has no {missing[0]}")


def fit_base(spec: ModelSpec, data: Samples, rng: RunRNG, previous: Model | None, warm_start: bool) -> Model:
    """Standard training on D (the same call and stream as the standard algorithm), or a warm start."""
    if warm_start and previous is not None:
        return spec.finetune(previous.base, data, rng.child(Role.FIT), base_budget(spec))
    return spec.fit(data, rng.child(Role.FIT))


def guided(algo, spec: ModelSpec, base: Model, aux: Model | None) -> Model:
    """The extrapolated prediction (1 + omega) base - omega aux; with no auxiliary model (omega = 0), the base
    through the same guided sampler."""
    if aux is None:
        return spec.guided(base, base, 0.0, algo.interval)
    return spec.guided(base, aux, algo.omega, algo.interval)


@ALGOS.register("sims")
@dataclass(frozen=True)
class SIMS:
    """Train a base model, fine-tune an auxiliary copy on n_aux of its own samples, sample with negative guidance.

    ``aux_data``: "synthetic" (SIMS) or "real" (the control: the copy fine-tuned on n_aux items of the loop's real
    data D_r, the same budget). ``aux_proportions`` (p_0, ..., p_{G-1}): S holds exactly those shares of G groups
    of the data source's classes (contiguous: with 10 classes and G = 2, classes 0-4 and 5-9), the classes given
    by ``source.label`` (a mixture's most likely component; an image set's feature-network classifier); guidance
    away from S steers the output toward the complement (the SIMS paper's distribution control).
    ``aux_decoder_only`` (unet): the copy fine-tunes its decoder half only, so guided sampling runs the shared
    encoder once for both models (benchmarks/bench_images.py measures the saving). ``aux_images`` (when given) or ``aux_epochs``: the fine-tuning budget B (module
    docstring). ``interval`` = (lo, hi): the sampler's step i of N (i = 0 the noisiest) is guided when
    lo <= i / N < hi; (0, 1) guides every step. ``warm_start``: generation t's base continues from generation
    t-1's base (fine-tuned on D^t for the spec's budget, keeping its standardisation) instead of a fresh one.
    omega = 0 samples exactly as the base model; omega = -1 as the auxiliary model alone.
    """

    needs: ClassVar[tuple[str, ...]] = ("finetune", "guided")  # capabilities of the model family (models.base)
    sampling: ClassVar[tuple[str, ...]] = ("omega", "interval")  # options of the combination, not of the auxiliary
    loop_context: ClassVar[bool] = True  # the loop passes D_r (the real-data control) and the data source (curation)

    omega: float = 1.0
    n_aux: int = 2000
    aux_epochs: int = 50
    aux_images: int | None = None
    aux_data: str = "synthetic"
    aux_proportions: tuple[float, ...] | None = None
    aux_decoder_only: bool = False
    interval: tuple[float, float] = (0.0, 1.0)
    warm_start: bool = False

    def __post_init__(self):
        object.__setattr__(self, "interval", check_guidance(self.omega, self.interval, self.n_aux, self.aux_epochs,
                                                            self.aux_images))
        if self.aux_data not in AUX_DATA:
            raise ValueError(f"aux_data must be one of {', '.join(AUX_DATA)}, got {self.aux_data!r}")
        if self.aux_proportions is not None:
            shares = tuple(float(v) for v in self.aux_proportions)
            if len(shares) < 2 or min(shares) < 0 or not math.isclose(sum(shares), 1, abs_tol=1e-9):
                raise ValueError(f"aux_proportions needs two or more non-negative shares summing to 1, got {shares}")
            if self.aux_data != "synthetic":
                raise ValueError("aux_proportions curates the synthetic set S: it needs aux_data=synthetic")
            object.__setattr__(self, "aux_proportions", shares)

    def check_run(self, cfg, built) -> None:
        """Before a run starts (``built``: its components by kind): the budget converts to the family's unit,
        the real-data control has n_aux real items to fine-tune on, and curation has classes to curate by."""
        spec = built["model"]
        if self.omega != 0 and can(spec, "finetune"):
            aux_budget(spec, self.n_aux, self.aux_epochs, self.aux_images)
        if self.aux_decoder_only and not can(spec, "decoder_only"):
            raise MadloopError(f"aux_decoder_only fine-tunes the decoder half of a U-Net; model '{cfg.model}' has none "
                               "(use unet)")
        if self.aux_proportions is not None:
            source = built["data"]
            if not hasattr(source, "label"):
                raise MadloopError(f"aux_proportions curates S by class: data source '{cfg.data}' gives no classes "
                                   "(use mixture or an image set)")
            if len(self.aux_proportions) > source.classes:
                raise MadloopError(f"aux_proportions has {len(self.aux_proportions)} groups but data source "
                                   f"'{cfg.data}' has {source.classes} classes")
        if self.aux_data == "real" and self.n_aux > cfg.n_real:
            raise MadloopError(f"sims with aux_data=real fine-tunes on n_aux real items: n_aux ({self.n_aux}) must be "
                               f"<= n_real ({cfg.n_real})")

    def train(self, spec: ModelSpec, data: Samples, rng: RunRNG, previous: Model | None,
              real: Samples | None = None, source=None) -> Model:
        check_family("sims", spec, self.needs)
        return guide(self, spec, fit_base(spec, data, rng, previous, self.warm_start), data, rng, real, source)

    def combine(self, spec: ModelSpec, base: Model, aux: Model | None) -> Model:
        return guided(self, spec, base, aux)

    def auxiliary(self, spec: ModelSpec, base: Model, data: Samples, rng: RunRNG, real: Samples | None = None,
                  source=None) -> Model:
        """The auxiliary model of ``base`` (``data``: the base's training set, unused here; ``rng``: the training
        stream that fitted the base)."""
        budget = aux_budget(spec, self.n_aux, self.aux_epochs, self.aux_images)
        # The set the copy fine-tunes on: n_aux unguided, unbiased samples of the base (S), S curated to the
        # proportions, or n_aux real items.
        if self.aux_proportions is not None:
            s = curated_samples(base, source, self.aux_proportions, self.n_aux, rng.child(Role.AUX_SAMPLES))
        elif self.aux_data == "synthetic":
            s = base.sample(self.n_aux, rng.child(Role.AUX_SAMPLES))
        else:
            if real is None or real.n < self.n_aux:
                raise MadloopError(f"sims with aux_data=real fine-tunes on n_aux = {self.n_aux} real items; the loop's "
                                   f"real data has {0 if real is None else real.n}")
            s = real.take(rng.child(Role.AUX_SAMPLES).permutations(real.n, self.n_aux))
        # The auxiliary model: the base fine-tuned on that set alone for the budget B; the set is then discarded.
        half = {"decoder_only": True} if self.aux_decoder_only else {}
        return spec.finetune(base, s, rng.child(Role.AUX_FIT), budget, **half)


@ALGOS.register("autoguidance")
@dataclass(frozen=True)
class Autoguidance:
    """Guidance by a bad version of the model (Karras et al. 2024): a model of the same family trained from
    scratch on the same training set for the shorter budget B (``aux_images`` when given, else ``aux_epochs``;
    both unset: a quarter of the base's budget), ``aux_width`` times the base's width (1: the same network), on
    the base's schedule shrunk to B (``aux_schedule``, see ``aux_spec``): its own warm-up and EMA.

    Its budget is counted over the training set: aux_epochs passes over D, or aux_images images seen.
    omega, interval and warm_start as for sims.
    """

    needs: ClassVar[tuple[str, ...]] = ("finetune", "guided", "width")
    sampling: ClassVar[tuple[str, ...]] = ("omega", "interval")

    omega: float = 1.0
    aux_epochs: int | None = None
    aux_images: int | None = None
    aux_width: float = 1.0
    aux_schedule: str = "scaled"
    interval: tuple[float, float] = (0.0, 1.0)
    warm_start: bool = False

    def __post_init__(self):
        object.__setattr__(self, "interval", check_guidance(self.omega, self.interval, None, self.aux_epochs,
                                                            self.aux_images))
        if not 0 < self.aux_width <= 1:
            raise ValueError(f"aux_width (the bad model's share of the base's width) must be in (0, 1], got "
                             f"{self.aux_width}")
        if self.aux_schedule not in SCHEDULES:
            raise ValueError(f"aux_schedule must be one of {', '.join(SCHEDULES)}, got {self.aux_schedule!r}")

    def aux_spec(self, spec: ModelSpec, n: int) -> ModelSpec:
        """The bad model's spec: the base's with the shorter budget and the narrower network. With
        ``aux_schedule`` "scaled" (Karras et al. train the bad model on the base's recipe, for less), the family's
        schedule lengths counted in images (the unet's warm-up and EMA half-life, ``spec.schedule_options``) shrink
        in proportion to the budget, so a short budget is not spent inside the base's warm-up and its EMA averages
        over its own training; "base" keeps the base's lengths."""
        if self.aux_epochs is None and self.aux_images is None:
            budget = max(1, base_budget(spec) // 4)
        else:
            budget = aux_budget(spec, n, self.aux_epochs, self.aux_images)
        width = getattr(spec, spec.width_option)
        narrow = max(1, round(width * self.aux_width))
        scaled = {}
        if self.aux_schedule == "scaled":
            share = min(1.0, budget / base_budget(spec))
            scaled = {k: type(getattr(spec, k))(getattr(spec, k) * share) for k in getattr(spec, "schedule_options", ())}
        return dataclasses.replace(spec, **{spec.budget_unit: budget, spec.width_option: narrow, **scaled})

    def check_run(self, cfg, built) -> None:
        """Before a run starts: the bad model's spec is a valid one (e.g. its budget holds a minibatch)."""
        spec = built["model"]
        if self.omega != 0 and can(spec, "finetune"):
            try:
                self.aux_spec(spec, cfg.n_real)
            except ValueError as e:
                raise MadloopError(f"autoguidance's bad model: {e}") from None

    def train(self, spec: ModelSpec, data: Samples, rng: RunRNG, previous: Model | None) -> Model:
        check_family("autoguidance", spec, self.needs)
        return guide(self, spec, fit_base(spec, data, rng, previous, self.warm_start), data, rng)

    def combine(self, spec: ModelSpec, base: Model, aux: Model | None) -> Model:
        return guided(self, spec, base, aux)

    def auxiliary(self, spec: ModelSpec, base: Model, data: Samples, rng: RunRNG, real: Samples | None = None,
                  source=None) -> Model:
        """The bad model, trained from scratch on the base's training set ``data`` (``rng``: the base's training
        stream; ``base`` unused: the bad model shares nothing with it but the data)."""
        return self.aux_spec(spec, data.n).fit(data, rng.child(Role.AUX_FIT))


@ALGOS.register("continued")
@dataclass(frozen=True)
class Continued:
    """The compute-matched baseline of a guiding algorithm: standard training, then the base trained further on
    its own training set for the auxiliary's budget B (``aux_images`` when given, else ``aux_epochs`` passes over
    the training set), with a fresh optimiser, warm-up and EMA as SIMS's fine-tune has. If SIMS only gains by
    spending B more images of training, this gains as much, with no guidance at all."""

    needs: ClassVar[tuple[str, ...]] = ("finetune",)
    sampling: ClassVar[tuple[str, ...]] = ()

    aux_epochs: int = 50
    aux_images: int | None = None

    def __post_init__(self):
        check_guidance(0.0, (0.0, 1.0), None, self.aux_epochs, self.aux_images)

    def train(self, spec: ModelSpec, data: Samples, rng: RunRNG, previous: Model | None) -> Model:
        check_family("continued", spec, self.needs)
        return guide(self, spec, spec.fit(data, rng.child(Role.FIT)), data, rng)

    def auxiliary(self, spec: ModelSpec, base: Model, data: Samples, rng: RunRNG, real: Samples | None = None,
                  source=None) -> Model:
        """The base after B more images (or epochs) on ``data``."""
        return spec.finetune(base, data, rng.child(Role.AUX_FIT), aux_budget(spec, data.n, self.aux_epochs,
                                                                              self.aux_images))

    def combine(self, spec: ModelSpec, base: Model, aux: Model) -> Model:
        return aux


def curated_index(groups: np.ndarray, shares, n: int, rng: RunRNG) -> np.ndarray:
    """Per run, n indices into candidates labelled ``groups`` (runs, m) holding exactly round(n x share_g) items of
    each group g (SIMS's distribution control: S curated to the complement of the target mix). The counts are
    rounded by largest remainder so they sum to n; the items of a group are a random choice of its candidates."""
    shares = np.asarray(shares, dtype=float)
    if shares.ndim != 1 or (shares < 0).any() or not np.isclose(shares.sum(), 1):
        raise ValueError(f"the curation shares must be non-negative and sum to 1, got {shares.tolist()}")
    exact = shares * n
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact, kind="stable")[: n - counts.sum()]] += 1
    order = rng.permutations(groups.shape[1])
    picks = []
    for run, row in enumerate(order):
        labels = groups[run, row]
        chosen = []
        for g, k in enumerate(counts):
            members = row[labels == g]
            if len(members) < k:
                raise MadloopError(f"curation needs {k} items of group {g} but run {run}'s candidates hold "
                                   f"{len(members)}: draw more candidates")
            chosen.append(members[:k])
        picks.append(np.sort(np.concatenate(chosen)))
    return np.stack(picks)


MAX_ROUNDS = 16  # curation draws candidates in rounds of n until every group has enough


def groups_of(labels: np.ndarray, classes: int, groups: int) -> np.ndarray:
    """Contiguous groups of classes: class c of ``classes`` falls in group c * groups // classes."""
    return labels * groups // classes


def curated_samples(base: Model, source, shares: tuple[float, ...], n: int, rng: RunRNG) -> Samples:
    """n samples of ``base`` per run holding exactly round(n x share_g) items of each group of the source's classes:
    candidates are drawn in rounds of n until every run has enough of every group (at most MAX_ROUNDS)."""
    if source is None or not hasattr(source, "label"):
        raise MadloopError("aux_proportions curates S by class: it needs a data source that labels items")
    need = np.ceil(np.asarray(shares) * n)
    parts = []
    for i in range(MAX_ROUNDS):
        parts.append(base.sample(n, rng.child(Role.curation_round(i))))
        candidates = Samples.concat(parts)
        groups = groups_of(source.label(candidates.x), source.classes, len(shares))
        counts = (groups[..., None] == np.arange(len(shares))).sum(1)
        if (counts >= need).all():
            return candidates.take(curated_index(groups, shares, n, rng.child(Role.CURATE)))
    raise MadloopError(f"curation found too few items of some group among {MAX_ROUNDS} x {n} samples of the model "
                       f"(per run and group: {counts.min(0).tolist()}, needed {need.astype(int).tolist()})")
