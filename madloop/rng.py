"""Random streams keyed by (seed, block of runs, generation, role).

Every random number in madloop comes from a NumPy ``SeedSequence`` whose spawn key names what it is
for, never from global state, so a result does not depend on the order of work, the number of
workers, how runs are chunked, or a resume.

Runs are grouped in fixed blocks of ``RUNS_PER_BLOCK`` consecutive runs. A block's draws for one
(generation, role) come from one generator, each draw shaped ``(runs in the block, ...)``; run ``r`` owns
row ``r % RUNS_PER_BLOCK`` of its block's draws. A chunk that holds only part of a block (``total``
tells where the block ends) makes the block's whole draws and keeps its own rows, so any chunking sees
the same numbers. One generator per block (not per run) keeps the cost of making streams small even at a
million runs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import numpy as np

RUNS_PER_BLOCK = 1000
SHARED = 0  # block slot of the streams that all runs share (the reference sample, projections)


class Role(str, Enum):
    """The names of madloop's streams. A name's text is its key: a misspelt literal would silently make a
    new stream, and a changed text changes every result drawn from it, so code names roles from here. A member
    is its text (a ``str``: it compares, hashes and formats as the text, so its key is the text's)."""

    # Per generation t of the loop (rng.Streams.at):
    REAL = "real"  # D_r at t = 0, the fresh real draw R^t at t >= 2
    BUDGET = "budget"  # subsampling the accumulated synthetic sets to the budget
    TRAIN = "train"  # the training algorithm A (also the optimiser's sub-stream inside a fit)
    SYNTH = "synth"  # S^t, drawn from G^t with the sampling bias lam
    EVAL = "eval"  # the n_eval samples that the metrics measure (a real sample at t = 0)
    FLOOR = "floor"  # paired evaluation (madloop.evaluate): the real sample of each draw, the floor
    REFERENCE = "reference"  # the n_ref real points that every run is measured against (shared)
    GRID = "grid"  # the fixed noise and labels of the image grids (drawn at t = 0, reused by every generation)
    CANDIDATES = "candidates"  # curation: the candidates drawn from G^t beyond S^t's own n_synth
    CURATE = "curate"  # curation: the verifier's accept / reject draws (also SIMS's curated S: sims.curated_samples)
    CORRECT = "correct"  # self-correction: the Langevin steps' noise and Metropolis draws
    # Sub-streams of a training stream (RunRNG.child):
    FIT = "fit"  # a model family's fit
    INIT = "init"  # network initialisation
    GENERATOR = "generator"  # the GAN's generator, under INIT
    DISCRIMINATOR = "discriminator"  # the GAN's critic, under INIT
    AUX_SAMPLES = "aux-samples"  # SIMS: the internal synthetic set S
    AUX_FIT = "aux-fit"  # SIMS: fine-tuning the auxiliary model on S
    # Streams of no run (a bare SeedSequence keyed by role_id alone):
    FEATURES = "features"  # the image metrics' feature network: its initialisation and minibatch order
    # A study's own stream:
    STUDY_REAL = "study/real"  # mad-bias: the real points drawn beside run 0's synthetic sets

    __str__ = str.__str__  # the text, as f-strings and child() keys need it (a plain Enum would give 'Role.REAL')
    __format__ = str.__format__

    @staticmethod
    def metric(name: str) -> str:
        """The shared stream of metric ``name`` (its random projections)."""
        return f"metric/{name}"

    @staticmethod
    def coupling(k: int) -> str:
        """The initialisation of the flow's coupling layer ``k``, under INIT."""
        return f"coupling {k}"

    @staticmethod
    def curation_round(i: int) -> str:
        """SIMS's curated S (aux_proportions): candidates of round ``i``."""
        return f"round-{i}"

    @staticmethod
    def split(name: str) -> str:
        """The fixed permutation that splits image set ``name`` into its pools (images.split_order)."""
        return f"split/{name}"


def role_id(role: str) -> int:
    """A stable integer for a role name (the same on every machine and Python version)."""
    return zlib.crc32(role.encode("utf-8"))


def generator(seed: int, gen: int, role: str, block: int | None = None) -> np.random.Generator:
    """The generator for one (seed, generation, role) and one block of runs, or the shared one."""
    slot = SHARED if block is None else 1 + block
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(role_id(role), gen, slot)))


def blocks(runs: range) -> list[range]:
    """Split a range of runs at the stream blocks' boundaries."""
    cuts = [runs.start, *range((runs.start // RUNS_PER_BLOCK + 1) * RUNS_PER_BLOCK, runs.stop, RUNS_PER_BLOCK), runs.stop]
    return [range(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


@dataclass(frozen=True)
class RunRNG:
    """Per-run random draws for a chunk of runs at one (generation, role).

    Each draw method returns an array whose first axis is the run. ``rows`` selects runs inside the
    chunk (used to replay one run's streams alone); by default all runs of the chunk are drawn.
    ``total``: the number of runs of the whole configuration (None: the chunk ends the last block it
    touches), which fixes how many rows each block's draws have.
    """

    seed: int
    runs: range
    gen: int
    role: str
    rows: tuple[int, ...] | None = None
    total: int | None = None

    def _generators(self) -> list[np.random.Generator]:
        # Made on the first draw (not before: many roles go unused), then advanced by every draw.
        if "_gens" not in self.__dict__:
            gens = [generator(self.seed, self.gen, self.role, b.start // RUNS_PER_BLOCK) for b in blocks(self.runs)]
            object.__setattr__(self, "_gens", gens)
        return self.__dict__["_gens"]

    @property
    def n_runs(self) -> int:
        return len(self.runs) if self.rows is None else len(self.rows)

    def child(self, role: str) -> "RunRNG":
        """An independent stream for a sub-task of this one (same runs and generation)."""
        return RunRNG(self.seed, self.runs, self.gen, f"{self.role}/{role}", self.rows, self.total)

    def subset(self, rows: Sequence[int]) -> "RunRNG":
        """The same streams restricted to some runs of the chunk (positions inside ``runs``)."""
        return RunRNG(self.seed, self.runs, self.gen, self.role, tuple(int(r) for r in rows), self.total)

    def _draw(self, fn, shape: tuple[int, ...]) -> np.ndarray:
        end = self.runs.stop if self.total is None else self.total
        parts = []
        for g, b in zip(self._generators(), blocks(self.runs)):
            first = b.start - b.start % RUNS_PER_BLOCK  # the block's rows outside the chunk are drawn and dropped
            rows = fn(g, (min(first + RUNS_PER_BLOCK, end) - first, *shape))
            parts.append(rows[b.start - first : b.stop - first])
        out = np.concatenate(parts, axis=0)
        return out if self.rows is None else out[list(self.rows)]

    def standard_normal(self, *shape: int, dtype=np.float64) -> np.ndarray:
        return self._draw(lambda g, s: g.standard_normal(s, dtype=dtype), shape)

    def random(self, *shape: int) -> np.ndarray:
        return self._draw(lambda g, s: g.random(s), shape)

    def integers(self, high: int, *shape: int) -> np.ndarray:
        return self._draw(lambda g, s: g.integers(0, high, s), shape)

    def chisquare(self, df, *shape: int) -> np.ndarray:
        return self._draw(lambda g, s: g.chisquare(df, s), shape)

    def permutations(self, n: int, k: int | None = None) -> np.ndarray:
        """One random permutation of range(n) per run (first k entries if k is given): shape (runs, k)."""
        order = np.argsort(self.random(n), axis=1, kind="stable")
        return order if k is None else order[:, :k]


@dataclass(frozen=True)
class Streams:
    """The key tree of one run configuration (``total`` runs), restricted to a chunk of runs."""

    seed: int
    runs: range
    total: int | None = None

    def at(self, gen: int, role: str) -> RunRNG:
        return RunRNG(self.seed, self.runs, gen, role, total=self.total)
