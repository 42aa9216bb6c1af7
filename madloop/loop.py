"""The self-consuming loop (SPEC section 1), one chunk of Monte-Carlo runs at a time.

Generation t trains G^t = A(D^t) and draws the synthetic set S^t from it:

    D^1 = D_r                                   (always real data only)
    D^t = S^(t-1)                               fully synthetic
    D^t = D_r + S^(t-1)                         synthetic augmentation (the same real set)
    D^t = R^t + S^(t-1)                         fresh data (a new real draw each generation)

With ``accumulate`` every S^1..S^(t-1) is kept instead of S^(t-1) alone, optionally subsampled to a
fixed ``budget``. Synthetic sets are drawn with the sampling bias ``lam``; real data never is.
Symbols: n_real = |D_r| = |R^t|, n_synth = |S^t|, lam = the paper's lambda.

Remedies (madloop/remedies.py): with ``real_weight`` w the real part of D^t carries the share w of the
training objective and the synthetic part 1 - w; ``curate`` and ``correct`` change S^t as it is drawn,
before any training set takes it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from madloop import remedies
from madloop.registry import Registry
from madloop.rng import Role, Streams
from madloop.samples import Samples

LOOPS: Registry = Registry("loop")


def join(parts: list):
    """Pool training sets through their own type's ``concat`` (Samples, or whatever a data source draws)."""
    return type(parts[0]).concat(parts)


@LOOPS.register("fully_synthetic")
def fully_synthetic(real: Samples, synth: Samples, fresh_real: Callable[[], Samples]) -> Samples:
    return synth


@LOOPS.register("augmentation")
def augmentation(real: Samples, synth: Samples, fresh_real: Callable[[], Samples]) -> Samples:
    return join([real, synth])


@LOOPS.register("fresh")
def fresh(real: Samples, synth: Samples, fresh_real: Callable[[], Samples]) -> Samples:
    return join([fresh_real(), synth])


@dataclass(frozen=True)
class LoopState:
    """All that generation t hands to generation t + 1: a checkpoint to resume from."""

    gen: int
    real: Samples
    kept: list  # the synthetic sets the next generation may train on
    model: Any


@dataclass(frozen=True)
class Generation:
    """What generation t of a chunk produced: its training-set size, model G^t, synthetic set S^t (after
    the remedies), the remedies' per-run costs (``accepted``: curation's accepted share), and D^t itself."""

    gen: int
    n_train: int
    model: Any
    synth: Samples
    state: LoopState
    cost: dict = field(default_factory=dict)
    data: Any = None


def generations(cfg, parts, runs: range, state: LoopState | None = None) -> Iterator[Generation]:
    """Yield generations 1..cfg.gens of the loop for a chunk of runs (or those after ``state.gen``).

    ``cfg`` is a RunConfig; ``parts`` its resolved components (data source, model spec, algorithm).
    Every random stream is keyed by (seed, run block, generation, role), so a chunk's results do not
    depend on the other chunks, and a resumed loop continues exactly as an uninterrupted one.
    """
    streams = Streams(cfg.seed, runs, cfg.runs)
    loop = LOOPS[cfg.loop]
    if state is None:
        state = LoopState(0, parts.data.sample(cfg.n_real, streams.at(0, Role.REAL)), [], None)
    real, kept, model = state.real, state.kept, state.model
    w = cfg.real_weight
    for t in range(state.gen + 1, cfg.gens + 1):
        # Training set D^t; with real_weight w, its real part carries the share w of the objective.
        if t == 1:
            train = real
        else:
            synth = join(kept)
            if cfg.budget is not None and synth.n > cfg.budget:
                synth = synth.take(streams.at(t, Role.BUDGET).permutations(synth.n, cfg.budget))
            train = loop(remedies.weigh(real, w), remedies.weigh(synth, None if w is None else 1 - w),
                         lambda: remedies.weigh(parts.data.sample(cfg.n_real, streams.at(t, Role.REAL)), w))
        # G^t = A(D^t), then S^t with sampling bias lam.
        extra = {"real": real, "source": parts.data} if getattr(parts.algo, "loop_context", False) else {}
        model = parts.algo.train(parts.model, train, streams.at(t, Role.TRAIN), model, **extra)
        synth_t = model.sample(cfg.n_synth, streams.at(t, Role.SYNTH), cfg.lam)
        # Curation and self-correction of S^t, before any training set takes it in.
        synth_t, cost = remedies.apply(cfg, parts.data, model, synth_t, streams, t)
        kept = kept + [synth_t] if cfg.accumulate else [synth_t]
        yield Generation(t, train.n, model, synth_t, LoopState(t, real, kept, model), cost, train)
